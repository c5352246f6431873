"""The category actor is killed (Ray restarts it); it reloads from PostgreSQL and nothing is lost.

A request whose actor call died gets a clean 503 (outcome unknown, retry); one the API answered 201
exists in the database afterwards; nothing is oversold; and the category keeps selling.
"""
from __future__ import annotations

import asyncio
import os
import random
import uuid
import warnings
from collections import Counter
from datetime import datetime

import httpx
import pytest
import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError
from sqlalchemy import text

from tests.helpers import (
    actor_figures,
    assert_consistent,
    category_actor,
    db_counters,
    hold_status,
    many_buyers,
    new_category,
    person,
    replace_category_actor,
    scalar,
    wait_until,
)
from tests.lossy_proxy import LossyProxy

pytestmark = pytest.mark.usefixtures("fast_users")  # person() mints users straight into the database

SEATS = 60
BUYERS = 160


def actor(cat: dict):
    return category_actor(cat["event"], cat["category"])


def actor_pid(cat: dict) -> int:
    return ray.get(actor(cat).__ray_call__.remote(lambda self: os.getpid()), timeout=120)


def retired(cat: dict) -> bool:
    """Has the category's actor ended for good (no actor under its name)?"""
    try:
        actor(cat)
    except ValueError:
        return True
    return False


def kill(cat: dict) -> None:
    ray.kill(actor(cat), no_restart=False)


def current_pid(cat: dict) -> int | None:
    """The actor process's pid, or None while it is dying or restarting."""
    try:
        return ray.get(actor(cat).__ray_call__.remote(lambda self: os.getpid()), timeout=30)
    except (RayActorError, ActorUnavailableError, GetTimeoutError):
        return None


def kill_and_wait(cat: dict) -> None:
    """Kill the actor and wait until its successor answers (a new process: a new pid)."""
    before = actor_pid(cat)
    kill(cat)
    wait_until(lambda: current_pid(cat) not in (None, before), timeout=120, interval=0.2)


class Rush:
    """Buyers who retry a 503 the way a careful client does: orders with the same Idempotency-Key."""

    def __init__(self, cat: dict):
        self.cat = cat
        self.orders: dict[str, int] = {}  # confirmed by the API (201)
        self.cancelled: set[str] = set()
        self.unknown = Counter()  # 503 answers per action: outcome unknown to the client
        self.statuses = Counter()
        self.bad: list[str] = []
        self.done = 0

    def saw(self, action: str, r: httpx.Response, allowed: set[int]) -> None:
        self.done += 1
        self.statuses[(action, r.status_code)] += 1
        if r.status_code == 503:
            self.unknown[action] += 1
            body = r.json()
            if body.get("statusCode") != 503 or "error" not in body or "message" not in body:
                self.bad.append(f"{action}: unclean 503 {r.text[:200]}")
        elif r.status_code not in allowed:
            self.bad.append(f"{action}: {r.status_code} {r.text[:200]}")

    async def order(self, client, user, body: dict, path: str) -> httpx.Response:
        """Create an order; on 503 retry with the same key (backing off), as the API asks."""
        headers = {**user["headers"], "Idempotency-Key": uuid.uuid4().hex}
        for attempt in range(10):
            r = await client.post(path, json=body, headers=headers)
            self.saw(path, r, {201, 400})
            if r.status_code != 503:
                break
            await asyncio.sleep(0.2 * (attempt + 1))  # back off while the actor restarts
        if r.status_code == 201:
            self.orders[r.json()["id"]] = body["quantity"]
        return r

    async def buyer(self, client, user, kind: int, rng: random.Random) -> None:
        await asyncio.sleep(rng.random() * 1.5)
        body = {**self.cat["body"], "quantity": rng.randint(1, 2)}
        if kind in (0, 1):
            r = await client.post("/api/holds", json=body, headers=user["headers"])
            self.saw("hold", r, {201, 400})
            if r.status_code == 201 and kind == 0:
                await self.order(client, user, {**body, "lockId": r.json()["lockId"]}, "/api/orders/with-lock")
            elif r.status_code == 201:
                d = await client.delete(f"/api/holds/{r.json()['lockId']}", headers=user["headers"])
                self.saw("release", d, {200, 404})
        else:
            r = await self.order(client, user, body, "/api/orders")
            if r.status_code == 201 and kind == 3:
                order_id = r.json()["id"]
                for attempt in range(10):
                    c = await client.post(f"/api/orders/{order_id}/cancel", headers=user["headers"])
                    # after a 503 the first cancel may have happened: then the retry says 400
                    self.saw("cancel", c, {201, 400})
                    if c.status_code != 503:
                        break
                    await asyncio.sleep(0.2 * (attempt + 1))
                if c.status_code == 201:
                    self.cancelled.add(order_id)

    async def run(self, server: str, buyers: list[dict], kill_after: int) -> bool:
        """Run the rush and kill the actor once `kill_after` answers came back. Returns True if killed."""
        rng = random.Random(7)
        killed = False

        async def killer():
            nonlocal killed
            while self.done < kill_after:
                await asyncio.sleep(0.005)
            await asyncio.to_thread(kill, self.cat)
            killed = True

        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=server, timeout=120, limits=limits) as client:
            await asyncio.gather(killer(), *(self.buyer(client, u, i % 4, random.Random(rng.random()))
                                             for i, u in enumerate(buyers)))
        return killed


def test_killed_mid_rush_loses_no_confirmed_order(server, http, db, jwt_secret):
    cat = new_category(http, seats=SEATS)
    buyers = many_buyers(db, jwt_secret, BUYERS)
    assert http.post("/api/holds", json={**cat["body"], "quantity": 1},
                     headers=buyers[0]["headers"]).status_code == 201  # the actor is up before the rush
    pid_before = actor_pid(cat)
    rush = Rush(cat)
    assert asyncio.run(rush.run(server, buyers[1:], kill_after=60))
    assert rush.bad == [], rush.bad[:10]
    wait_until(lambda: current_pid(cat) not in (None, pid_before), timeout=120)  # it died and came back

    with db.connect() as conn:
        rows = {str(r.id): r for r in conn.execute(text("SELECT id, quantity, status FROM orders "
                                                          "WHERE category_id = :c"), {"c": cat["category"]})}
    # every order the API confirmed is in the database, as confirmed (or cancelled by its owner)
    for order_id, quantity in rush.orders.items():
        assert order_id in rows, f"order {order_id} was confirmed to the client but is lost"
        assert rows[order_id].quantity == quantity
        assert rows[order_id].status in (("cancelled",) if order_id in rush.cancelled else ("confirmed", "cancelled"))
    # retries with the same key never made a second order, so unknown outcomes add none either:
    # the only orders the clients were not told about would come from requests that ended in 503
    unexplained = set(rows) - set(rush.orders)
    assert len(unexplained) <= rush.unknown["/api/orders"] + rush.unknown["/api/orders/with-lock"], (
        unexplained, rush.unknown)
    counters = assert_consistent(db, http, cat["event"], cat["category"])
    assert counters["sold"] + counters["held"] <= SEATS
    assert rush.statuses[("hold", 201)] > 0 and len(rush.orders) > 0, rush.statuses

    # the category keeps selling after the restart: if it sold out, an owner frees a seat first
    if counters["sold"] + counters["held"] == SEATS:
        victim = next(rows[o] for o in rush.orders if rows[o].status == "confirmed")
        with db.connect() as conn:
            owner_id = conn.execute(text("SELECT user_id FROM orders WHERE id = :o"), {"o": victim.id}).scalar()
        owner = next(b for b in buyers if b["id"] == owner_id)
        assert http.post(f"/api/orders/{victim.id}/cancel", headers=owner["headers"]).status_code == 201
    r = http.post("/api/orders", json={**cat["body"], "quantity": 1}, headers=person()["headers"])
    assert r.status_code == 201, r.text
    assert_consistent(db, http, cat["event"], cat["category"])


def test_active_hold_survives_a_restart(http, db):
    cat = new_category(http, seats=5)
    buyer = person()
    held = http.post("/api/holds", json={**cat["body"], "quantity": 3}, headers=buyer["headers"]).json()
    kill_and_wait(cat)
    figures = actor_figures(cat["event"], cat["category"])
    assert (figures["heldSeats"], figures["availableSeats"], figures["activeHolds"]) == (3, 2, 1)
    # still the owner's only: others cannot take those seats, the owner can buy them
    r = http.post("/api/orders", json={**cat["body"], "quantity": 3}, headers=person()["headers"])
    assert r.status_code == 400, r.text
    r = http.post("/api/orders/with-lock", json={**cat["body"], "quantity": 3, "lockId": held["lockId"]},
                  headers=buyer["headers"])
    assert r.status_code == 201, r.text
    assert hold_status(db, held["lockId"]) == "confirmed"
    assert_consistent(db, http, cat["event"], cat["category"])


def test_an_actor_tells_whether_it_restarted_without_a_warning_on_the_console(http):
    from actors.category import restarted

    def ask(_actor) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning would be raised here, not printed
            return restarted()

    cat = new_category(http, seats=1)
    assert ray.get(actor(cat).__ray_call__.remote(ask), timeout=60) is False
    kill_and_wait(cat)
    assert ray.get(actor(cat).__ray_call__.remote(ask), timeout=60) is True


def test_a_dead_database_connection_costs_the_buyer_nothing(http, db):
    """The category actor does not ping its connection before each batch: when PostgreSQL has dropped it,
    the batch fails, and is retried one by one after a reload on a new connection. The buyer gets a 201."""
    from actors.category import connection_name

    cat = new_category(http, seats=5)
    r = http.post("/api/orders", json={**cat["body"], "quantity": 1}, headers=person()["headers"])
    assert r.status_code == 201, r.text
    def end_its_connection() -> int:
        return scalar(db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :n",
                      n=connection_name(cat["event"], cat["category"]))

    assert end_its_connection() == 1
    r = http.post("/api/orders", json={**cat["body"], "quantity": 2}, headers=person()["headers"])
    assert r.status_code == 201, r.text
    assert ray.get(actor(cat).__ray_call__.remote(lambda self: self.batches_retried), timeout=60) == 1
    assert db_counters(db, cat["category"])["sold"] == 3
    assert_consistent(db, http, cat["event"], cat["category"])
    # When a reload is the first to meet the dead connection (an organizer's change), it connects again.
    end_its_connection()
    r = http.put(f"/api/events/{cat['event']}", json={"location": "Elsewhere"}, headers=cat["org"]["headers"])
    assert r.status_code == 200, r.text
    assert actor_figures(cat["event"], cat["category"])["soldSeats"] == 3  # reloaded, not dropped
    r = http.post("/api/orders", json={**cat["body"], "quantity": 1}, headers=person()["headers"])
    assert r.status_code == 201, r.text
    assert db_counters(db, cat["category"])["sold"] == 4


def test_hold_that_expired_while_the_actor_was_down_is_expired_on_reload(http, db):
    cat = new_category(http, seats=5)
    buyer = person()
    assert http.post("/api/holds", json={**cat["body"], "quantity": 1},
                     headers=person()["headers"]).status_code == 201
    short = http.post("/api/holds", json={**cat["body"], "quantity": 4}, headers=buyer["headers"]).json()
    # time runs out for the hold behind the running actor's back (the database's expiresAt is the truth):
    # the actor keeps it until its own expiry, and its successor must expire it once it has loaded
    with db.begin() as conn:
        conn.execute(text("UPDATE holds SET expires_at = now() - interval '1 second' WHERE id = :h"),
                     {"h": short["lockId"]})
    assert hold_status(db, short["lockId"]) == "active"
    assert db_counters(db, cat["category"])["held"] == 5
    kill_and_wait(cat)  # the restarted actor loads at once, called or not
    wait_until(lambda: hold_status(db, short["lockId"]) == "expired")
    assert actor_figures(cat["event"], cat["category"])["activeHolds"] == 1
    assert db_counters(db, cat["category"])["held"] == 1
    assert http.get("/api/holds", headers=buyer["headers"]).json() == []
    r = http.post("/api/orders/with-lock", json={**cat["body"], "quantity": 4, "lockId": short["lockId"]},
                  headers=buyer["headers"])
    assert r.status_code == 400, r.text
    assert http.post("/api/holds", json={**cat["body"], "quantity": 4}, headers=buyer["headers"]).status_code == 201
    assert_consistent(db, http, cat["event"], cat["category"])


def test_hold_that_expires_during_the_restart_is_expired_by_the_new_actor(http, db):
    """A short hold (1 s) outlives the actor that granted it; its successor expires it on time, though
    nobody calls the category (it counts against its buyer's ticket limit in the event's other categories)."""
    cat = new_category(http, seats=5)
    buyer = person()
    assert http.post("/api/holds", json={**cat["body"], "quantity": 1},
                     headers=person()["headers"]).status_code == 201
    ray.get(actor(cat).configure.remote({"hold_seconds": 1, "max_per_order": 10}))
    short = http.post("/api/holds", json={**cat["body"], "quantity": 4}, headers=buyer["headers"]).json()
    kill_and_wait(cat)
    wait_until(lambda: hold_status(db, short["lockId"]) == "expired")
    assert assert_consistent(db, http, cat["event"], cat["category"])["held"] == 1


def test_requests_during_the_restart_are_answered(http, db):
    """Calls that arrive while the actor restarts wait for it (or get a clean 503), never a 500."""
    cat = new_category(http, seats=50)
    buyers = [person() for _ in range(3)]
    http.post("/api/holds", json={**cat["body"], "quantity": 1}, headers=buyers[0]["headers"])
    kill(cat)
    statuses = [http.post("/api/orders", json={**cat["body"], "quantity": 1}, headers=b["headers"]).status_code
                for b in buyers[1:]]
    assert set(statuses) <= {201, 503}, statuses
    assert_consistent(db, http, cat["event"], cat["category"])



@pytest.mark.parametrize("attempt", range(3))  # a race: a few tries make it likely to hit
def test_deleting_an_event_while_its_actor_restarts(http, db, attempt):
    """The delete must not fail because the actor is restarting, and no hold may slip in after it."""
    cat = new_category(http, seats=5)
    assert http.post("/api/holds", json={**cat["body"], "quantity": 1},
                     headers=person()["headers"]).status_code == 201
    kill(cat)
    r = http.delete(f"/api/events/{cat['event']}", headers=cat["org"]["headers"])
    assert r.status_code == 200, r.text
    late = person()
    for _ in range(3):
        r = http.post("/api/holds", json={**cat["body"], "quantity": 1}, headers=late["headers"])
        assert r.status_code in (404, 503), r.text
        if r.status_code == 404:
            break
    assert db_counters(db, cat["category"])["held"] == 1


def test_a_restarted_actor_takes_the_callers_settings_not_its_stale_creation_arguments(http, database_url):
    """Ray replays the creation arguments on restart; they must not bring back an old hold duration."""
    cat = new_category(http, seats=5)
    # The gateway created the actor with its own settings when the category was created; replace it by
    # one created with other ("stale") arguments, as an older deployment would have left behind.
    replace_category_actor(cat["event"], cat["category"], database_url, {"hold_seconds": 5, "max_per_order": 10})

    def held_for(user) -> float:
        r = http.post("/api/holds", json={**cat["body"], "quantity": 1}, headers=user["headers"])
        if r.status_code == 503:  # the gateway still had the killed actor's handle: it looks it up again
            r = http.post("/api/holds", json={**cat["body"], "quantity": 1}, headers=user["headers"])
        hold = r.json()
        return (datetime.fromisoformat(hold["expiresAt"]) - datetime.fromisoformat(hold["createdAt"])).total_seconds()

    assert held_for(person()) == 5  # creation arguments are authoritative while the actor lives
    kill_and_wait(cat)
    assert held_for(person()) == 300  # after the restart: the gateway's settings (serve_config default)


def test_an_idle_actor_without_holds_retires_and_its_successor_sells(http, db):
    """The test session sets TICKETING_ACTOR_IDLE_EXIT_SECONDS=20: an idle category actor with no active
    hold ends its process; one with a hold stays (it must expire the hold); the next buyer is served."""
    idle, holding = new_category(http, seats=5), new_category(http, seats=5)
    holder = person()
    assert http.post("/api/holds", json={**holding["body"], "quantity": 2},
                     headers=holder["headers"]).status_code == 201
    holding_pid = actor_pid(holding)

    wait_until(lambda: retired(idle), timeout=90, interval=1)
    assert actor_pid(holding) == holding_pid  # still the same process: it has a hold to keep
    r = http.post("/api/orders", json={**idle["body"], "quantity": 1}, headers=person()["headers"])
    assert r.status_code == 201, r.text
    assert actor(idle) is not None  # a successor was created for the buyer
    r = http.post("/api/orders/with-lock", json={**holding["body"], "quantity": 2, "lockId": http.get(
        "/api/holds", headers=holder["headers"]).json()[0]["lockId"]}, headers=holder["headers"])
    assert r.status_code == 201, r.text
    assert_consistent(db, http, idle["event"], idle["category"])
    assert_consistent(db, http, holding["event"], holding["category"])


def test_an_idle_actor_of_a_category_that_no_longer_sells_retires_and_one_on_sale_stays(http, db, database_url):
    """With the production policy (idle actors of categories on sale stay: no TICKETING_ACTOR_IDLE_EXIT_SECONDS),
    the actor of a deleted event ends once idle for TICKETING_CLOSED_ACTOR_EXIT_SECONDS (2 s here), and its
    buyer can still cancel through a successor; the actor of a category on sale, idle just as long, stays."""
    policy = {"TICKETING_ACTOR_IDLE_EXIT_SECONDS": "0", "TICKETING_CLOSED_ACTOR_EXIT_SECONDS": "2"}
    deleted, on_sale = new_category(http, seats=5), new_category(http, seats=5)
    buyer = person()
    r = http.post("/api/orders", json={**deleted["body"], "quantity": 1}, headers=buyer["headers"])
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    for cat in (deleted, on_sale):
        replace_category_actor(cat["event"], cat["category"], database_url, {"hold_seconds": 300, "max_per_order": 10},
                               env=policy)
    on_sale_pid = actor_pid(on_sale)
    assert http.delete(f"/api/events/{deleted['event']}", headers=deleted["org"]["headers"]).status_code == 200

    wait_until(lambda: retired(deleted), timeout=60, interval=0.5)
    assert actor_pid(on_sale) == on_sale_pid  # idle as long, but on sale: still the same process
    r = http.post(f"/api/orders/{order_id}/cancel", headers=buyer["headers"])
    assert r.status_code == 201, r.text
    assert db_counters(db, deleted["category"]) == {"total": 5, "held": 0, "sold": 0}
    # The cancel started a successor, which loaded the event as deleted. The organizer puts it on sale
    # again: the services that kept the retired actor's handle must reach that successor, or it refuses
    # every buyer as off sale.
    r = http.put(f"/api/events/{deleted['event']}", json={"isActive": True}, headers=deleted["org"]["headers"])
    assert r.status_code == 200, r.text
    r = http.post("/api/orders", json={**deleted["body"], "quantity": 1}, headers=person()["headers"])
    assert r.status_code == 201, r.text
    assert_consistent(db, http, deleted["event"], deleted["category"])


@pytest.mark.parametrize("kind", ["order", "hold"])
def test_a_batch_whose_answer_the_network_lost_is_answered_as_written_not_decided_again(http, db, database_url, kind):
    """The connection breaks after PostgreSQL wrote the batch but before its answer came back: the actor
    must find its batch in the database and answer as decided. Deciding again would sell the buyer's seats a
    second time (an order without an Idempotency-Key), or refuse their own hold as already held."""
    proxy = LossyProxy(database_url)
    cat = new_category(http, seats=5)
    replace_category_actor(cat["event"], cat["category"], proxy.url, {"hold_seconds": 300, "max_per_order": 10})
    buyer = person()
    proxy.armed = True
    route = "/api/orders" if kind == "order" else "/api/holds"
    r = http.post(route, json={**cat["body"], "quantity": 2}, headers=buyer["headers"])
    assert proxy.broken == 1  # the database's answer to the batch was lost on the way
    assert r.status_code == 201, r.text
    if kind == "order":
        with db.connect() as conn:
            ids = conn.execute(text("SELECT id FROM orders WHERE category_id = :c AND user_id = :u"),
                               {"c": cat["category"], "u": buyer["id"]}).scalars().all()
        assert [str(i) for i in ids] == [str(r.json()["id"])]  # one order, the one answered
    else:
        lock = r.json()["lockId"]
        r = http.post("/api/orders/with-lock", json={**cat["body"], "quantity": 2, "lockId": lock},
                      headers=buyer["headers"])
        assert r.status_code == 201, r.text
    assert db_counters(db, cat["category"]) == {"total": 5, "held": 0, "sold": 2}
    assert_consistent(db, http, cat["event"], cat["category"])
