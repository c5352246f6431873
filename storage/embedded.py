"""Embedded PostgreSQL (the `pgserver` package) for a zero-setup local install."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# Every Serve replica and every category actor keeps a small pool; PostgreSQL's default of 100
# connections is too few for a few hundred categories plus tests.
MAX_CONNECTIONS = 500
# A new WAL segment is created by the backend whose commit first needs it, and every commit waits behind
# it. PostgreSQL fills it with 16 MiB of zeros first (`wal_init_zero`), which the disk must take while a
# rush is committing: measured 2026-12-05 on the 2-core machine (BENCHMARKS.md), the category batch
# that crossed into a new segment took 107 ms (the others at most 24 ms), and in ten runs the rush
# that met the first new segment had a p99 of 120-212 ms. Off, creating a segment writes its last byte
# only: no trial p99 over 150 ms in ten runs, no batch over 31 ms in the ten rushes probed. A server
# that has run for a while mostly recycles old segments; a new data folder has none.
RELOADABLE_SETTINGS = {"wal_init_zero": "off"}


def start_embedded(pgdata: Path, *, stop_on_exit: bool = False) -> str:
    """Start (or attach to) the PostgreSQL server whose data lives in `pgdata`; return its URL.

    By default the server keeps running after this process exits, like a local database would, so
    that Serve replicas and actors started later attach to the same server. `ticketing db-stop` stops it.

    Processes that start at once on a new data folder take turns (`serve run` builds the configuration's
    applications in parallel): pgserver locks its own start, but not the restart that raises the
    connection limit, and a second restart would cut off the connections of the process that made the first.
    """
    import pgserver

    pgdata.mkdir(parents=True, exist_ok=True)
    with _start_lock(pgdata):
        server = pgserver.get_server(pgdata, cleanup_mode="stop" if stop_on_exit else None)
        _apply_reloadable_settings(server)
        if int(_show(server, "max_connections")) < MAX_CONNECTIONS:
            _raise_connection_limit(server, pgdata)
    log.info("embedded PostgreSQL at %s", pgdata)
    return server.get_uri()


def _start_lock(pgdata: Path):
    """An inter-process lock for starting the server of `pgdata`. It lives in the user's runtime folder, as
    pgserver's own lock does, not beside the data: a home folder on NFS or Lustre may not support locks."""
    import fasteners
    import platformdirs

    folder = platformdirs.user_runtime_path("ticketing", ensure_exists=True)
    digest = hashlib.sha256(str(pgdata.resolve()).encode()).hexdigest()[:16]
    return fasteners.InterProcessLock(folder / f"pgdata-{digest}.lock")


def _show(server, name: str) -> str:
    return server.psql(f"SHOW {name};").split()[2]  # psql's table: name, dashes, value, row count


def _apply_reloadable_settings(server) -> None:
    """Settings a reload applies, kept in the data folder (ALTER SYSTEM) and checked at every start."""
    changed = False
    for name, value in RELOADABLE_SETTINGS.items():
        if _show(server, name) != value:
            server.psql(f"ALTER SYSTEM SET {name} = '{value}';")
            changed = True
    if changed:
        server.psql("SELECT pg_reload_conf();")


def _raise_connection_limit(server, pgdata: Path) -> None:
    """Once, on a new data folder: raise max_connections and restart with the same options."""
    from pgserver._commands import pg_ctl
    from pgserver.utils import PostmasterInfo

    server.psql(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS};")
    pg_ctl(["-w", "restart"], pgdata=pgdata, user=server.system_user)
    server._postmaster_info = PostmasterInfo.read_from_pgdata(pgdata)  # new pid, so cleanup stops the right one


def server_running(pgdata: Path) -> bool:
    """Does a PostgreSQL server run on `pgdata`? Its `postmaster.pid` alone does not say: a crash or a reboot
    leaves the file behind, and its pid may be dead or, by now, another program's."""
    import psutil  # pgserver's own dependency

    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        return "postgres" in psutil.Process(pid).name()
    except (OSError, ValueError, psutil.Error):
        return False


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server in `pgdata`, whichever process started it; False if none was running.

    pgserver itself only stops a server when its last registered process lets go, and it keeps the
    pids of processes that ended without its exit hook (`ticketing serve` replaces itself with
    `serve run`), so its cleanup is not enough here.
    """
    running = server_running(pgdata)
    if running:
        from pgserver._commands import pg_ctl
        from pgserver.postgres_server import PostgresServer

        run_as = "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None  # as pgserver does
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=run_as)
        # This process's pgserver handle (if it started the server) is stale now: a later start in the same
        # process (a notebook run again) must start the server, not be handed the stopped one.
        PostgresServer._instances.pop(Path(pgdata).expanduser().resolve(), None)
    (pgdata / ".handle_pids.json").unlink(missing_ok=True)
    return running
