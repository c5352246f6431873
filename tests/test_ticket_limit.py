"""The per-account ticket limit of an event, across its categories, through HTTP and WebSocket (real
Ray actors, Serve and PostgreSQL).

The limit is set with SQL here (the API field is another change). Each category of an event has its own
actor, so only the locked counts in `buyer_tickets` let two actors agree on what one buyer has; the
tests check the rows of holds and orders, those counts, and that the actors decided on their own (no
batch needed the database's guard and the one-by-one retry) unless a test says otherwise.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError
from sqlalchemy import text

from tests.helpers import (
    assert_consistent,
    assert_error,
    category_actor,
    create_event,
    person,
    scalar,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("fast_users")  # person() mints users straight into the database

LIMIT = 4
LIMIT_MESSAGE = f"You can buy at most {LIMIT} tickets for this event"


def limited_event(http, db, limit: int | None = LIMIT, seats: int = 40, refresh: bool = True) -> dict:
    """An event with two categories (Floor, Balcony) whose ticket limit is `limit` per account."""
    org = person("organizer")
    event = create_event(http, org, ticketCategories=[
        {"categoryName": "Floor", "price": "50.00", "totalSeats": seats},
        {"categoryName": "Balcony", "price": "30.00", "totalSeats": seats},
    ])
    ev = {"event": event["idEvent"], "org": org,
          "floor": event["ticketCategories"][0]["id"], "balcony": event["ticketCategories"][1]["id"]}
    set_limit(db, ev, limit, refresh=refresh)
    return ev


def set_limit(db, ev: dict, limit: int | None, refresh: bool = True) -> None:
    """Change the event's limit in the database; with `refresh`, tell the running actors as an edit
    through the API does (without it they learn it from the database on their own)."""
    with db.begin() as conn:
        conn.execute(text("UPDATE events SET ticket_limit = :l WHERE id = :e"), {"l": limit, "e": ev["event"]})
    if refresh:
        for category in (ev["floor"], ev["balcony"]):
            ray.get(category_actor(ev["event"], category).refresh.remote(), timeout=60)


def body(ev: dict, category: str, quantity: int, **extra) -> dict:
    return {"eventId": ev["event"], "categoryId": ev[category], "quantity": quantity, **extra}


def hold(http, ev, buyer, category, quantity):
    return http.post("/api/holds", json=body(ev, category, quantity), headers=buyer["headers"])


def buy(http, ev, buyer, category, quantity):
    return http.post("/api/orders", json=body(ev, category, quantity), headers=buyer["headers"])


def tickets_in_rows(db, ev: dict, user_id: int) -> int:
    """Seats the buyer holds (active holds) or bought (confirmed orders) in the event, from the rows."""
    return scalar(db, "SELECT (SELECT coalesce(sum(quantity), 0) FROM holds WHERE event_id = :e AND user_id = :u "
                      "AND status = 'active') + (SELECT coalesce(sum(quantity), 0) FROM orders "
                      "WHERE event_id = :e AND user_id = :u AND status IN ('confirmed', 'completed'))",
                  e=ev["event"], u=user_id)


def tickets_counted(db, ev: dict, user_id: int) -> int:
    """The buyer's count in `buyer_tickets` (kept by the triggers; 0 when there is no row)."""
    return scalar(db, "SELECT coalesce((SELECT tickets FROM buyer_tickets WHERE event_id = :e AND user_id = :u), 0)",
                  e=ev["event"], u=user_id)


def assert_tickets(db, ev: dict, user_id: int, expected: int) -> None:
    assert tickets_in_rows(db, ev, user_id) == tickets_counted(db, ev, user_id) == expected


def batches_retried(ev: dict, category: str) -> int:
    """Batches of the category's actor that failed in the database and were retried one by one."""
    actor = category_actor(ev["event"], ev[category])
    return ray.get(actor.__ray_call__.remote(lambda self: self.batches_retried), timeout=60)


def assert_consistent_event(db, http, ev: dict) -> None:
    for category in ("floor", "balcony"):
        assert_consistent(db, http, ev["event"], ev[category])


def refused_for_the_limit(r: httpx.Response, message: str = LIMIT_MESSAGE) -> None:
    assert_error(r, 400, message)


# ---- under concurrency ------------------------------------------------------------------------------------


def test_concurrent_holds_and_orders_in_two_categories_stop_at_the_limit(http, db, server):
    """Eight buyers each fire six requests of 2 seats at once (a hold and two orders in each category):
    every buyer gets exactly 4 seats, every other request the limit's refusal, and both actors decided
    it themselves (no batch fell back on the database's guard)."""
    ev = limited_event(http, db)
    buyers = [person() for _ in range(8)]
    calls = [(buyer, kind, category) for buyer in buyers for category in ("floor", "balcony")
             for kind in ("hold", "buy", "buy")]
    start = threading.Barrier(len(calls))

    def fire(call):
        buyer, kind, category = call
        path = "/api/holds" if kind == "hold" else "/api/orders"
        with httpx.Client(base_url=server, timeout=60) as client:
            start.wait(60)
            return buyer, client.post(path, json=body(ev, category, 2), headers=buyer["headers"])

    with ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(fire, calls))

    for buyer in buyers:
        mine = [r for b, r in answers if b is buyer]
        granted = [r for r in mine if r.status_code == 201]
        assert sum(r.json()["quantity"] for r in granted) == LIMIT, [(r.status_code, r.text) for r in mine]
        for r in mine:
            if r.status_code != 201:
                refused_for_the_limit(r)
        assert_tickets(db, ev, buyer["id"], LIMIT)
    assert batches_retried(ev, "floor") == batches_retried(ev, "balcony") == 0
    assert_consistent_event(db, http, ev)


def test_buyers_racing_both_categories_with_their_counts_already_there(http, db, server):
    """Buyers who already have a seat (their count row exists, so only its row lock orders the two
    actors) buy 2 in both categories at once with limit 4: exactly one of each buyer's pair wins."""
    ev = limited_event(http, db, seats=100)
    buyers = [person() for _ in range(24)]
    for buyer in buyers:
        assert buy(http, ev, buyer, "floor", 1).status_code == 201
    calls = [(buyer, category) for buyer in buyers for category in ("floor", "balcony")]
    start = threading.Barrier(len(calls))

    def fire(call):
        buyer, category = call
        with httpx.Client(base_url=server, timeout=60) as client:
            start.wait(60)
            return buyer, client.post("/api/orders", json=body(ev, category, 2), headers=buyer["headers"])

    with ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(fire, calls))
    for buyer in buyers:
        mine = [r for b, r in answers if b is buyer]
        assert sorted(r.status_code for r in mine) == [201, 400], [r.text for r in mine]
        refused_for_the_limit(next(r for r in mine if r.status_code == 400))
        assert_tickets(db, ev, buyer["id"], 3)
    assert batches_retried(ev, "floor") == batches_retried(ev, "balcony") == 0
    assert_consistent_event(db, http, ev)


def test_two_actors_waiting_on_the_same_buyer_decide_one_after_the_other(http, db, server):
    """Deterministic: another writer holds the buyer's count locked while the buyer asks both categories
    for 2 more seats (limit 4), so both actors are inside their batch at once. Each must wait for the lock
    *before* deciding: then the second decides on the first one's committed count and refuses, and
    no write ever reaches the database's guard."""
    ev = limited_event(http, db)
    buyer = person()
    assert buy(http, ev, buyer, "floor", 1).status_code == 201  # the buyer's count row exists
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    with ThreadPoolExecutor(2) as pool, db.connect() as blocker:
        with blocker.begin():
            blocker.execute(text("SELECT 1 FROM buyer_tickets WHERE event_id = :e AND user_id = :u FOR UPDATE"),
                            {"e": ev["event"], "u": buyer["id"]})

            def fire(category):
                with httpx.Client(base_url=server, timeout=60) as client:
                    return client.post("/api/orders", json=body(ev, category, 2), headers=buyer["headers"])

            answers = [pool.submit(fire, category) for category in ("floor", "balcony")]
            wait_until(lambda: scalar(db, waiting) >= 2)  # both actors are blocked on the buyer
        answers = [a.result(60) for a in answers]
    assert sorted(r.status_code for r in answers) == [201, 400], [r.text for r in answers]
    refused_for_the_limit(next(r for r in answers if r.status_code == 400))
    assert_tickets(db, ev, buyer["id"], 3)
    assert batches_retried(ev, "floor") == batches_retried(ev, "balcony") == 0
    assert_consistent_event(db, http, ev)


# ---- what counts, and what frees -------------------------------------------------------------------------


def test_a_hold_confirmed_into_an_order_is_counted_once(http, db):
    ev = limited_event(http, db)
    buyer = person()
    lock = hold(http, ev, buyer, "floor", 4)
    assert lock.status_code == 201, lock.text
    assert_tickets(db, ev, buyer["id"], 4)
    r = http.post("/api/orders/with-lock", json=body(ev, "floor", 4, lockId=lock.json()["lockId"]),
                  headers=buyer["headers"])
    assert r.status_code == 201, r.text
    assert_tickets(db, ev, buyer["id"], 4)
    refused_for_the_limit(buy(http, ev, buyer, "balcony", 1))
    refused_for_the_limit(hold(http, ev, buyer, "floor", 1))
    assert_tickets(db, ev, buyer["id"], 4)
    assert_consistent_event(db, http, ev)


def test_a_cancelled_order_frees_its_seats_for_the_limit(http, db):
    ev = limited_event(http, db)
    buyer = person()
    first = buy(http, ev, buyer, "floor", 2)
    assert buy(http, ev, buyer, "balcony", 2).status_code == 201
    refused_for_the_limit(buy(http, ev, buyer, "balcony", 1))
    r = http.post(f"/api/orders/{first.json()['id']}/cancel", headers=buyer["headers"])
    assert r.status_code in (200, 201), r.text
    assert_tickets(db, ev, buyer["id"], 2)
    assert buy(http, ev, buyer, "balcony", 2).status_code == 201
    refused_for_the_limit(buy(http, ev, buyer, "floor", 1))
    assert_tickets(db, ev, buyer["id"], 4)
    assert_consistent_event(db, http, ev)


def test_a_released_hold_frees_its_seats_for_the_limit(http, db):
    ev = limited_event(http, db)
    buyer = person()
    lock = hold(http, ev, buyer, "floor", 3).json()
    refused_for_the_limit(hold(http, ev, buyer, "balcony", 2))
    assert http.delete(f"/api/holds/{lock['lockId']}", headers=buyer["headers"]).status_code == 200
    assert_tickets(db, ev, buyer["id"], 0)
    assert hold(http, ev, buyer, "balcony", 4).status_code == 201
    assert_tickets(db, ev, buyer["id"], 4)
    assert_consistent_event(db, http, ev)


def test_an_expired_hold_frees_its_seats_for_the_limit(http, db):
    ev = limited_event(http, db)
    buyer = person()
    ray.get(category_actor(ev["event"], ev["floor"]).configure.remote({"hold_seconds": 1, "max_per_order": 10}))
    lock = hold(http, ev, buyer, "floor", 4).json()
    wait_until(lambda: scalar(db, "SELECT status FROM holds WHERE id = :h", h=lock["lockId"]) == "expired")
    assert_tickets(db, ev, buyer["id"], 0)
    assert buy(http, ev, buyer, "balcony", 4).status_code == 201
    assert_tickets(db, ev, buyer["id"], 4)
    assert_consistent_event(db, http, ev)


def test_other_buyers_are_not_affected(http, db):
    ev = limited_event(http, db, seats=10)
    first, second = person(), person()
    assert buy(http, ev, first, "floor", 4).status_code == 201
    assert buy(http, ev, second, "floor", 4).status_code == 201
    refused_for_the_limit(buy(http, ev, first, "balcony", 1))
    assert_tickets(db, ev, first["id"], 4)
    assert_tickets(db, ev, second["id"], 4)


# ---- the limit changes during the sale -------------------------------------------------------------------


def test_an_actor_that_was_not_told_learns_the_limit_from_the_database(http, db):
    """The limit is set behind the actors' backs (no refresh): the database's guard refuses the write
    past it, and the retry answers with the limit, not a conflict."""
    ev = limited_event(http, db, limit=None)
    buyer = person()
    assert buy(http, ev, buyer, "floor", 3).status_code == 201
    set_limit(db, ev, LIMIT, refresh=False)
    refused_for_the_limit(buy(http, ev, buyer, "balcony", 2))
    assert batches_retried(ev, "balcony") == 1  # the guard fired once; the actor knows the limit since
    assert buy(http, ev, buyer, "balcony", 1).status_code == 201
    refused_for_the_limit(buy(http, ev, buyer, "balcony", 1))
    assert batches_retried(ev, "balcony") == 1
    assert_tickets(db, ev, buyer["id"], 4)
    assert_consistent_event(db, http, ev)


def test_a_limit_changed_during_the_sale_applies_at_the_next_request(http, db):
    """Actors that know of a limit read it again with every batch: lowered, raised or removed in the
    database, the next request follows it without a refresh."""
    ev = limited_event(http, db)
    buyer = person()
    assert buy(http, ev, buyer, "floor", 3).status_code == 201
    set_limit(db, ev, 2, refresh=False)  # below what the buyer has: allowed, nothing is taken away
    refused_for_the_limit(buy(http, ev, buyer, "balcony", 1), "You can buy at most 2 tickets for this event")
    set_limit(db, ev, 6, refresh=False)
    assert buy(http, ev, buyer, "balcony", 3).status_code == 201
    refused_for_the_limit(buy(http, ev, buyer, "floor", 1), "You can buy at most 6 tickets for this event")
    set_limit(db, ev, None, refresh=False)
    assert buy(http, ev, buyer, "floor", 5).status_code == 201
    assert_tickets(db, ev, buyer["id"], 11)
    assert batches_retried(ev, "floor") == batches_retried(ev, "balcony") == 0
    assert_consistent_event(db, http, ev)


def test_the_limit_holds_after_an_actor_restart(http, db):
    """The counts are in PostgreSQL: a restarted actor reloads the limit and reads them again."""
    ev = limited_event(http, db)
    buyer = person()
    assert hold(http, ev, buyer, "floor", 2).status_code == 201
    assert buy(http, ev, buyer, "balcony", 2).status_code == 201
    actor = category_actor(ev["event"], ev["floor"])

    def pid():
        try:
            return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
        except (RayActorError, ActorUnavailableError, GetTimeoutError):
            return None

    before = pid()
    ray.kill(actor, no_restart=False)
    wait_until(lambda: pid() not in (None, before), timeout=120, interval=0.2)
    refused_for_the_limit(buy(http, ev, buyer, "floor", 1))
    assert batches_retried(ev, "floor") == 0  # the new instance loaded the limit: it refused on its own
    assert http.delete("/api/holds/" + scalar(db, "SELECT id::text FROM holds WHERE user_id = :u AND status = "
                                                  "'active'", u=buyer["id"]),
                       headers=buyer["headers"]).status_code == 200
    assert buy(http, ev, buyer, "floor", 2).status_code == 201
    refused_for_the_limit(buy(http, ev, buyer, "floor", 1))
    assert_tickets(db, ev, buyer["id"], 4)
    assert_consistent_event(db, http, ev)


# ---- over the WebSocket ------------------------------------------------------------------------------------


def test_websocket_lock_is_refused_with_the_limit(http, db, realtime):
    from tests.test_realtime import Client

    ev = limited_event(http, db)
    buyer = person()
    assert buy(http, ev, buyer, "balcony", 3).status_code == 201
    token = buyer["headers"]["Authorization"].removeprefix("Bearer ")
    with Client(realtime, token) as client:
        client.send("lock-tickets", {"eventId": ev["event"], "categoryId": ev["floor"], "quantity": 2})
        assert client.expect("lock-tickets-response") == {
            "success": False, "message": LIMIT_MESSAGE, "statusCode": 400, "availableTickets": 40}
        client.send("lock-tickets", {"eventId": ev["event"], "categoryId": ev["floor"], "quantity": 1})
        assert client.expect("lock-tickets-response")["success"] is True
    assert_tickets(db, ev, buyer["id"], 4)


# ---- no limit: as before ------------------------------------------------------------------------------------


def test_without_a_limit_a_buyer_takes_what_is_there(http, db):
    ev = limited_event(http, db, limit=None)
    buyer = person()
    assert hold(http, ev, buyer, "floor", 10).status_code == 201
    assert buy(http, ev, buyer, "balcony", 10).status_code == 201
    assert buy(http, ev, buyer, "balcony", 10).status_code == 201
    assert_tickets(db, ev, buyer["id"], 30)  # counted all the same, ready for a limit set later
