"""Abuse limits through real HTTP (docs/operations.md, "Abuse limits and slow clients").

The session runs with the limits off (tests/conftest.py). This module turns the production ones on the
way an operator does during a sale: a new `rate_limits` in the Gateway's user_config (read from
serve_config.yaml), then off again. Each simulated client sends its own address in X-Forwarded-For,
the header the session names as set by a trusted proxy (TICKETING_CLIENT_ADDRESS_HEADER).
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests import session_apps
from tests.helpers import assert_error, new_category, person, register, scalar
from tests.test_metrics import samples, scrape_until

pytestmark = pytest.mark.usefixtures("fast_users")
ROOT_DIR = Path(__file__).resolve().parents[1]

_addresses = (f"198.51.100.{i}" for i in itertools.count(1))


def client(address: str | None = None) -> dict:
    """Headers of a client with an address of its own (each test uses fresh ones: buckets are per address)."""
    return {"X-Forwarded-For": f"10.9.9.9, {address or next(_addresses)}"}  # the proxy appended the last hop


def production_rate_limits() -> dict:
    config = yaml.safe_load((ROOT_DIR / "serve_config.yaml").read_text())
    app = next(a for a in config["applications"] if a["name"] == "ticketing")
    return next(d for d in app["deployments"] if d["name"] == "Gateway")["user_config"]["rate_limits"]


def reconfigure_gateway(user_config: dict) -> None:
    """The running Gateway replicas with this user_config (Serve calls their reconfigure; none restarts)."""
    session_apps.reconfigure("ticketing", {"Gateway": user_config})


# Registration's default (20 an address at once) is lowered here only so the test registers 3 users through
# argon2, not 21; every other limit is the production default.
REGISTER_FOR_TEST = "3 + 10/hour"


@pytest.fixture(scope="module")
def limits_on(server):
    limits = production_rate_limits()
    reconfigure_gateway({"rate_limits": {**limits, "register": {"address": REGISTER_FOR_TEST}}})
    yield limits
    reconfigure_gateway({"rate_limits": "off"})


def assert_too_many(r, what: str) -> int:
    body = assert_error(r, 429)
    assert body["error"] == "Too Many Requests" and body["message"].startswith(f"Too many {what}, try again in ")
    retry_after = int(r.headers["Retry-After"])
    assert retry_after >= 1 and body["message"].endswith(f" {retry_after} second{'s' if retry_after > 1 else ''}")
    return retry_after


def test_registration_past_the_address_limit_is_429_and_creates_no_user(limits_on, http, db):
    me = client()
    for _ in range(3):
        r = http.post("/api/auth/register", json={"username": f"reg{time.time_ns()}", "password": "s3cret-pass"},
                      headers=me)
        assert r.status_code == 201, r.text
    name = f"reg{time.time_ns()}"
    r = http.post("/api/auth/register", json={"username": name, "password": "s3cret-pass"}, headers=me)
    assert_too_many(r, "registrations")
    assert scalar(db, "SELECT count(*) FROM users WHERE username = :u", u=name) == 0
    other = http.post("/api/auth/register", json={"username": name, "password": "s3cret-pass"}, headers=client())
    assert other.status_code == 201, other.text  # another address is not affected


def registered(server: str) -> dict:
    """A user registered and logged in (one login) through the API, from an address of its own."""
    with httpx.Client(base_url=server, headers=client(), timeout=60) as fresh:
        return register(fresh)


def test_password_guessing_on_one_account_is_held_to_the_account_limit(limits_on, server, http):
    victim = registered(server)
    burst = int(limits_on["login"]["account"].split("+")[0])
    for _ in range(burst - 1):  # the first login was register()'s; from changing addresses: the account
        # limit is the one that holds
        r = http.post("/api/auth/login", json={"username": victim["username"], "password": "wrong-guess"},
                      headers=client())
        assert r.status_code == 401, r.text
    r = http.post("/api/auth/login", json={"username": victim["username"], "password": victim["password"]},
                  headers=client())
    assert_too_many(r, "login attempts")  # refused before the password is even looked at
    other = registered(server)
    ok = http.post("/api/auth/login", json={"username": other["username"], "password": other["password"]},
                   headers=client())
    assert ok.status_code == 201, ok.text


def test_every_route_that_takes_seats_is_limited_per_address_and_a_refusal_takes_none(limits_on, http, db):
    cat = new_category(http, seats=40)
    me = client()
    first, second, third = person(), person(), person()
    burst = int(limits_on["hold"]["address"].split("+")[0])
    r = http.post("/api/holds", json={**cat["body"], "quantity": burst}, headers={**first["headers"], **me})
    assert r.status_code == 201, r.text
    lock_id = r.json()["lockId"]

    def seats_taken() -> tuple:
        return (scalar(db, "SELECT count(*) FROM holds WHERE category_id = :c", c=cat["category"]),
                scalar(db, "SELECT count(*) FROM orders WHERE category_id = :c", c=cat["category"]))

    before = seats_taken()
    for path, body in (("/api/holds", {**cat["body"], "quantity": 1}),
                       ("/api/events/tickets/reserve", {**cat["body"], "quantity": 1}),
                       ("/api/orders", {**cat["body"], "quantity": 1}),
                       ("/api/orders/with-lock", {**cat["body"], "quantity": 1})):
        assert_too_many(http.post(path, json=body, headers={**second["headers"], **me}), "seat holds")
    assert seats_taken() == before
    # Confirming a hold takes no new seats: the buyer who holds can still buy from the exhausted address.
    bought = http.post("/api/orders/with-lock", json={**cat["body"], "quantity": burst, "lockId": lock_id},
                       headers={**first["headers"], **me})
    assert bought.status_code == 201, bought.text
    # Another address is not affected.
    elsewhere = http.post("/api/holds", json={**cat["body"], "quantity": 1}, headers={**third["headers"], **client()})
    assert elsewhere.status_code == 201, elsewhere.text


def test_refusals_are_counted_in_metrics(limits_on, ray_cluster, http):
    cat = new_category(http, seats=20)
    me = client()
    burst = int(limits_on["hold"]["address"].split("+")[0])
    assert http.post("/api/holds", json={**cat["body"], "quantity": burst},
                     headers={**person()["headers"], **me}).status_code == 201
    port = ray_cluster._private.worker.global_worker.node.metrics_export_port
    url = f"http://127.0.0.1:{port}/metrics"
    name, tags = "ray_ticketing_rate_limited_total", {"action": "hold", "scope": "address"}
    before = sum(samples(scrape_until(url, lambda t: True), name, **tags))
    for _ in range(3):
        assert_too_many(http.post("/api/holds", json={**cat["body"], "quantity": 1},
                                  headers={**person()["headers"], **me}), "seat holds")
    text = scrape_until(url, lambda t: sum(samples(t, name, **tags)) >= before + 3)
    assert sum(samples(text, name, **tags)) >= before + 3, f"not exported at {url}"


def test_one_client_driving_60_accounts_is_held_to_the_limits_while_an_ordinary_buyer_gets_a_seat(
        limits_on, http, db):
    cat = new_category(http, seats=50)
    scalper, accounts = client(), [person() for _ in range(60)]
    rate = limits_on["hold"]["address"]
    burst, per_hour = float(rate.split("+")[0]), float(rate.split("+")[1].split("/")[0])
    started, held, refused = time.monotonic(), 0, 0
    for account in accounts:  # each account asks for the most seats it may
        r = http.post("/api/holds", json={**cat["body"], "quantity": 10}, headers={**account["headers"], **scalper})
        if r.status_code == 201:
            held += r.json()["quantity"]
        else:
            assert_too_many(r, "seat holds")
            refused += 1
    elapsed = time.monotonic() - started
    # What the limiter promises (one replica in the test session), and what it is for: < half the category.
    assert held <= burst + per_hour * elapsed / 3600, (held, elapsed)  # a seat costs a token
    assert held < cat["seats"] / 2 and refused >= 50, (held, refused)
    buyer = person()
    r = http.post("/api/holds", json={**cat["body"], "quantity": 2}, headers={**buyer["headers"], **client()})
    assert r.status_code == 201, r.text
    assert scalar(db, "SELECT coalesce(sum(quantity), 0) FROM holds WHERE category_id = :c AND status = 'active'",
                  c=cat["category"]) == held + 2


def reconfigure_realtime(user_config: dict) -> None:
    """The running plain-WebSocket replicas with this user_config (they reconfigure; none restarts)."""
    session_apps.reconfigure("realtime", {"Realtime": user_config})


def test_socket_holds_and_joins_are_held_to_the_same_limits(realtime, http, db):
    """lock-tickets and join-queue over the socket count against the HTTP limits' per-account buckets:
    a socket is no way round them."""
    from tests.test_realtime import Client

    limits = production_rate_limits()
    reconfigure_realtime({"hold_seconds": 300, "max_per_order": 10, "rate_limits": limits})
    try:
        cat = new_category(http, seats=50)
        buyer = person()
        with Client(realtime, buyer["headers"]["Authorization"].removeprefix("Bearer "),
                    headers=client()) as ws:
            lock = {"eventId": cat["event"], "categoryId": cat["category"], "userId": buyer["id"]}
            ws.send("lock-tickets", {**lock, "quantity": 10})  # the account's whole burst (10 seats)
            first = ws.expect("lock-tickets-response")
            assert first["success"] is True, first
            ws.send("unlock-tickets", {**lock, "lockId": first["lockId"]})
            assert ws.expect("unlock-tickets-response")["success"] is True
            ws.send("lock-tickets", {**lock, "quantity": 10})  # refills at 10 a minute: far from 10 yet
            refused = ws.expect("lock-tickets-response")
            assert refused["success"] is False and refused["statusCode"] == 429, refused
            assert refused["message"].startswith("Too many seat holds, try again in "), refused
        assert scalar(db, "SELECT count(*) FROM holds WHERE category_id = :c AND status = 'active'",
                      c=cat["category"]) == 0
    finally:
        reconfigure_realtime({"hold_seconds": 300, "max_per_order": 10, "rate_limits": "off"})


def test_a_quantity_below_one_over_the_socket_refills_no_rate_limit(realtime, http, db):
    """A lock-tickets with a quantity of 0 or below is refused at the socket before the rate limits: as a
    negative cost it would have refilled the account's bucket, and alternating it with real holds would
    have lifted the limit altogether."""
    from tests.test_realtime import Client

    reconfigure_realtime({"hold_seconds": 300, "max_per_order": 10, "rate_limits": production_rate_limits()})
    try:
        cat = new_category(http, seats=50)
        buyer = person()
        with Client(realtime, buyer["headers"]["Authorization"].removeprefix("Bearer "),
                    headers=client()) as ws:
            lock = {"eventId": cat["event"], "categoryId": cat["category"]}
            ws.send("lock-tickets", {**lock, "quantity": 10})  # the account's whole burst
            assert ws.expect("lock-tickets-response")["success"] is True
            for quantity in (-10, 0):
                ws.send("lock-tickets", {**lock, "quantity": quantity})
                refused = ws.expect("lock-tickets-response")
                assert refused["success"] is False and refused["statusCode"] == 400, refused
            other = new_category(http, seats=50)
            ws.send("lock-tickets", {"eventId": other["event"], "categoryId": other["category"], "quantity": 10})
            refused = ws.expect("lock-tickets-response")
            assert refused["success"] is False and refused["statusCode"] == 429, refused
        assert scalar(db, "SELECT count(*) FROM holds WHERE category_id = :c", c=other["category"]) == 0
    finally:
        reconfigure_realtime({"hold_seconds": 300, "max_per_order": 10, "rate_limits": "off"})
