"""Assembles the Serve application: `serve run serve_config.yaml` imports `build_app`.

At build time the database is resolved (DATABASE_URL, or the embedded server started in the data
folder) and migrated to the newest revision; every deployment then gets the concrete URL.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ray.serve import Application

from deployments.auth import AuthService
from deployments.events import EventsService
from deployments.gateway import Gateway
from deployments.orders import OrdersService
from deployments.realtime_queue import PUSH_INTERVAL_S
from deployments.realtime_sio import RealtimeSocketIO
from deployments.realtime_ws import Realtime
from deployments.users import UsersService
from storage import migrate
from storage.database import resolve_database_url
from ticketing import settings

log = logging.getLogger(__name__)


def resolve_and_migrate(args: dict) -> tuple[str, str]:
    """The application's database URL and data folder. The `data_dir` argument wins over
    TICKETING_DATA_DIR for this application: its embedded database and its JWT secret live there, the
    folder its replicas are given."""
    from_env = settings.data_dir()
    folder = Path(args["data_dir"]).expanduser().resolve() if args.get("data_dir") else from_env
    if folder != from_env and "TICKETING_DATA_DIR" in os.environ:
        # The applications built without data_dir (the socket ones in serve_config.yaml) would use the
        # other folder: another embedded database and another JWT secret, so sockets refuse the tokens.
        log.warning("data_dir %s is not TICKETING_DATA_DIR %s: give every application the same folder",
                    folder, from_env)
    os.environ.setdefault("TICKETING_DATA_DIR", str(folder))
    db_url = args.get("database_url") or resolve_database_url(folder)
    if str(args.get("migrate", os.environ.get("TICKETING_AUTO_MIGRATE", "1"))) not in ("0", "false", "False"):
        migrate.upgrade(db_url)
    settings.jwt_secret(folder)  # create the per-install secret once, before replicas race
    return db_url, str(folder)


def build_app(args: dict | None = None) -> Application:
    db_url, data_dir = resolve_and_migrate(dict(args or {}))
    return Gateway.bind(
        AuthService.bind(db_url, data_dir),
        UsersService.bind(db_url),
        EventsService.bind(db_url),
        OrdersService.bind(db_url),
        db_url,
        data_dir,
    )


def build_realtime_app(args: dict | None = None) -> Application:
    """The WebSocket application (route prefix /realtime), deployed next to the HTTP one."""
    args = dict(args or {})
    db_url, data_dir = resolve_and_migrate(args)
    return _sized(Realtime, args).bind(db_url, data_dir, float(args.get("fanout_interval_s", 0.0)),
                                       _push_interval(args))


def build_socketio_app(args: dict | None = None) -> Application:
    """The Socket.IO application (route prefix /socket.io, namespace /realtime): the same protocol.
    `polling: "0"` turns long-polling off (it is on only while the deployment has one replica)."""
    args = dict(args or {})
    db_url, data_dir = resolve_and_migrate(args)
    polling = str(args.get("polling", "1")) not in ("0", "false", "False")
    return _sized(RealtimeSocketIO, args).bind(db_url, data_dir, float(args.get("fanout_interval_s", 0.0)),
                                               polling, _push_interval(args))


def _push_interval(args: dict) -> float:
    """`queue_push_interval_s`: least time between two queue-status pushes to one socket (docs/websocket.md)."""
    return float(args.get("queue_push_interval_s", PUSH_INTERVAL_S))


def _sized(deployment, args: dict):
    options = {}
    if "max_ongoing_requests" in args:  # every open socket takes one slot; HTTP /stats needs one too
        options["max_ongoing_requests"] = int(args["max_ongoing_requests"])
    if "num_replicas" in args:  # sockets spread over replicas; each long-polls the broadcaster
        options["num_replicas"] = int(args["num_replicas"])
    return deployment.options(**options) if options else deployment
