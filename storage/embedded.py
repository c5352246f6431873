"""Embedded PostgreSQL (the `pgserver` package) for a zero-setup local install."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def start_embedded(pgdata: Path, *, stop_on_exit: bool = False) -> str:
    """Start (or attach to) the PostgreSQL server whose data lives in `pgdata`; return its URL.

    By default the server keeps running after this process exits, like a local database would, so
    that Serve replicas and actors started later attach to the same server. `ticketing db-stop` stops it.
    """
    import pgserver

    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop" if stop_on_exit else None)
    uri = server.get_uri()
    log.info("embedded PostgreSQL at %s", pgdata)
    return uri


def stop_embedded(pgdata: Path) -> None:
    import pgserver

    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    server.cleanup()
