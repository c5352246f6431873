"""Database URL resolution, engines and sessions.

`DATABASE_URL` wins; without it an embedded PostgreSQL starts in `<data dir>/pgdata`, the data folder
being passed in by the caller (storage reads no settings). Every process (replica, actor) builds its own
small async engine from the resolved URL. Whether the schema is migrated is `storage.migrate.health`.
"""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from storage.embedded import start_embedded


def normalise_url(url: str) -> str:
    """Any PostgreSQL URL → the SQLAlchemy form for psycopg 3."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError("DATABASE_URL must be a PostgreSQL URL (postgresql://...)")


def resolve_database_url(data_dir: Path) -> str:
    """`DATABASE_URL`, or the URL of the embedded server in `data_dir`/pgdata (started if needed)."""
    from_env = os.environ.get("DATABASE_URL")
    if from_env:
        return normalise_url(from_env)
    return normalise_url(start_embedded(Path(data_dir) / "pgdata"))


def make_engine(url: str, *, pool_size: int = 4, max_overflow: int | None = None,
                pre_ping: bool = True, name: str | None = None) -> AsyncEngine:
    """`pre_ping`: test each connection with a round trip when it leaves the pool (a dead one is replaced
    at once); a caller that handles a failed statement itself can skip that round trip. `name`: the
    connections' `application_name`, which `pg_stat_activity` shows."""
    return create_async_engine(
        normalise_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_pre_ping=pre_ping,
        connect_args={"application_name": name} if name else {},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
