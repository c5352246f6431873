"""Alembic environment: runs migrations on the connection handed over by storage.migrate, or, from the
command line (`alembic -c storage/alembic.ini upgrade head`), on the database of `DATABASE_URL`."""
import os

from alembic import context
from sqlalchemy import create_engine, pool, text

from storage.database import normalise_url
from storage.migrate import MIGRATION_LOCK_KEY  # start-ups and the CLI never migrate at once
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
    engine = create_engine(normalise_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            _migrate(conn)
    finally:
        engine.dispose()


run_migrations_online()
