"""Run Alembic migrations programmatically (the CLI works too: `DATABASE_URL=postgresql://...
alembic -c storage/alembic.ini upgrade head`), and
report whether a database is at the newest one (`health`).

Only this module imports Alembic, so category actors, which import `storage.database`, never load it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, pool, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import normalise_url

INI = Path(__file__).with_name("alembic.ini")
# Serialises concurrent start-ups (several replicas or test sessions) on the same database; the command
# line's path (storage/migrations/env.py) takes the same lock.
MIGRATION_LOCK_KEY = 727_274_001


def _config() -> Config:
    return Config(str(INI))


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


@contextmanager
def locked_connection(url: str) -> Iterator[Connection]:
    """A transaction on `url` holding the migration lock until it ends: what every migration runs in."""
    engine = create_engine(normalise_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            yield conn
    finally:
        engine.dispose()


def upgrade(url: str) -> None:
    with locked_connection(url) as conn:
        cfg = _config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


async def health(engine: AsyncEngine) -> dict:
    """Is the database reachable, and is its schema at the newest migration?"""
    try:
        async with engine.connect() as conn:
            # to_regclass is NULL when the table is missing: a reachable database that was never migrated
            # must say so, not pass for unreachable (the query on a missing table used to raise).
            current = None
            if (await conn.execute(text("SELECT to_regclass('alembic_version')"))).scalar() is not None:
                current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except Exception as exc:  # any failure here means "cannot talk to it", which is what health reports
        return {"database": "unreachable", "migrated": False, "detail": type(exc).__name__}
    head = head_revision()
    return {"database": "reachable", "migrated": current == head, "revision": current, "head": head}
