"""Alembic environment: runs migrations on the connection handed over by storage.migrate, or, from the
command line (`alembic -c storage/alembic.ini upgrade head`), on the database of `DATABASE_URL`."""
import os

from alembic import context

from storage.migrate import locked_connection
from storage.models import Base

target_metadata = Base.metadata
config = context.config


def _migrate(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("set DATABASE_URL to the PostgreSQL database to migrate (postgresql://...)")
    with locked_connection(url) as conn:  # the lock start-ups take too: never two migrations at once
        _migrate(conn)


run_migrations_online()
