"""One PostgreSQL, one Ray cluster and one Serve application for the whole test session.

PostgreSQL is `TEST_DATABASE_URL` if set (a fresh database is created in it), else an embedded
server in a temporary folder. Everything else is real: Ray actors, Serve's HTTP proxy, sockets.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest

from tests import session_apps
from ticketing.local import free_port, use_node_environment

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
use_node_environment()  # the Ray node as `ticketing serve` starts it (metrics every 2 s)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Every event the tests create gets its category actors at once (about 80 MB each): idle ones with no
# active hold end after 20 s so a session of hundreds of events fits in memory (production default: never).
# With that, a Gateway replica that (re)starts does not warm every category on sale (deployments.gateway):
# after the whole-restart test that was every category of the session, hundreds of actor processes.
os.environ.setdefault("TICKETING_ACTOR_IDLE_EXIT_SECONDS", "20")
# The suite registers, logs in and holds hundreds of times from 127.0.0.1: abuse limits off for the session.
# tests/test_abuse_limits.py turns the production ones on through the Gateway's user_config (live) and
# off again; its simulated clients each send their own address in the header a trusted proxy would set.
os.environ.setdefault("TICKETING_RATE_LIMITS", "off")
os.environ.setdefault("TICKETING_CLIENT_ADDRESS_HEADER", "X-Forwarded-For")
# On the HAProxy ingress (CI's second command): half-finished requests time out, as under `ticketing serve`
# (60 s) but sooner, so the tests that wait for it take half the time; still longer than the 20 s pings
# that keep an idle WebSocket open.
os.environ.setdefault("RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S", "30")
# On that ingress a replica that stops stays up at least this long (Serve's default: 30 s) so that load
# balancers in front of the nodes notice it is going. The tests have none: every application deletion and the
# session's end waited the 30 s (94 s of the HAProxy round's teardown, 2026-12-03).
os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")


def pytest_collection_modifyitems(items) -> None:
    """Tests that start a Ray cluster of their own (`own_cluster`: the notebooks, the two-node check) run
    first, before the session's cluster starts: beside it, two sets of Ray's processes shared the two
    cores, and the hold-policies notebook took 232 s against 56 s alone (2026-12-02)."""
    items.sort(key=lambda item: item.get_closest_marker("own_cluster") is None)  # stable: order kept


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ticketing-data")


@pytest.fixture(scope="session")
def database_url(data_dir):
    from sqlalchemy import create_engine, text

    from storage.database import normalise_url

    base = os.environ.get("TEST_DATABASE_URL")
    if base is None:
        from storage.embedded import start_embedded

        base = start_embedded(data_dir / "pgdata", stop_on_exit=True)
    name = f"ticketing_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = normalise_url(base)
    head, _, query = url.partition("?")
    url = head.rsplit("/", 1)[0] + "/" + name + (("?" + query) if query else "")
    from storage import migrate

    migrate.upgrade(url)
    yield url
    admin.dispose()


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from actors import NAMESPACE

    # address="local": always a fresh cluster of our own, even if another `ray start` cluster is running
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=NAMESPACE, log_to_driver=False,
             object_store_memory=256 * 2**20)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def server(ray_cluster, database_url, data_dir):
    """Base URL of the Serve HTTP proxy with the whole application deployed."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    session_apps.deploy("ticketing", "deployments.app:build_app", "/",
                        {"database_url": database_url, "data_dir": str(data_dir)})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="session")
def jwt_secret(server, data_dir) -> str:
    from ticketing.settings import jwt_secret

    return jwt_secret(data_dir)


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def db(database_url):
    """A synchronous engine for asserting on what the database holds."""
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def fast_users(db, jwt_secret) -> None:
    """`tests.helpers.person()` mints users straight into the database (with tokens signed by the server's
    secret) instead of registering them through argon2. Modules that use it say so:
    `pytestmark = pytest.mark.usefixtures("fast_users")`; from then on `new_category` does too."""
    from tests.helpers import use_fast_users

    use_fast_users(db, jwt_secret)


@pytest.fixture(scope="session")
def realtime(server, database_url, data_dir) -> str:
    """ws:// URL of the realtime WebSocket application, deployed next to the HTTP one on the same proxy."""
    session_apps.deploy("realtime", "deployments.app:build_realtime_app", "/realtime",
                        {"database_url": database_url, "data_dir": str(data_dir), "migrate": "0"})
    return server.replace("http://", "ws://", 1) + "/realtime"  # it ends with the session's serve.shutdown


@pytest.fixture(scope="session")
def socketio_url(server, database_url, data_dir) -> str:
    """Base URL for Socket.IO clients (`io(URL + "/realtime")`): the Socket.IO application is deployed
    at /socket.io, the path those clients use, next to the HTTP one on the same proxy."""
    session_apps.deploy("socketio", "deployments.app:build_socketio_app", "/socket.io",
                        {"database_url": database_url, "data_dir": str(data_dir), "migrate": "0"})
    return server  # it ends with the session's serve.shutdown
