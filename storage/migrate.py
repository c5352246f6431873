"""Run Alembic migrations programmatically (the CLI works too: `alembic -c storage/alembic.ini`)."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool, text

from storage.database import normalise_url

INI = Path(__file__).with_name("alembic.ini")
# Serialises concurrent start-ups (several replicas or test sessions) on the same database.
MIGRATION_LOCK_KEY = 727_274_001


def _config() -> Config:
    return Config(str(INI))


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def upgrade(url: str) -> None:
    engine = create_engine(normalise_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()
