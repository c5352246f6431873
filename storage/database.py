"""Database URL resolution, engines and sessions.

`DATABASE_URL` wins; without it an embedded PostgreSQL starts in `<data dir>/pgdata`. Every process
(replica, actor) builds its own small async engine from the resolved URL.
"""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from ticketing import settings


def normalise_url(url: str) -> str:
    """Any PostgreSQL URL → the SQLAlchemy form for psycopg 3."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError("DATABASE_URL must be a PostgreSQL URL (postgresql://...)")


def resolve_database_url(data_dir: Path | None = None) -> str:
    """`DATABASE_URL`, or the URL of the embedded server (started if needed)."""
    from_env = os.environ.get("DATABASE_URL")
    if from_env:
        return normalise_url(from_env)
    from storage.embedded import start_embedded

    return normalise_url(start_embedded((data_dir or settings.data_dir()) / "pgdata"))


def make_engine(url: str, *, pool_size: int = 4, max_overflow: int | None = None) -> AsyncEngine:
    return create_async_engine(
        normalise_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_pre_ping=True,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


async def health(engine: AsyncEngine) -> dict:
    """Is the database reachable, and is its schema at the newest migration?"""
    from storage.migrate import head_revision

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
