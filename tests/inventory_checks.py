"""Assertions on a category's seats, shared by the holds/orders/rush/restart tests.

The database is the truth: its counters must equal its rows, never exceed capacity, and the API and
the category actor must report the same figures.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import text

from domain.vocabulary import SOLD_STATUSES_SQL
from tests.helpers import create_event, register


_ctx: dict = {}


@pytest.fixture(scope="session", autouse=True)
def fast_users(db, jwt_secret):
    """Import into a test module to let `person()` mint users there (autouse)."""
    _ctx.update(db=db, secret=jwt_secret)


def person(role: str = "assistant") -> dict:
    """A user inserted straight into the database with a token signed by the server's secret:
    registering through argon2 costs ~0.5 s a user, and auth has its own tests."""
    return many_buyers(_ctx["db"], _ctx["secret"], 1, role)[0]


def new_category(http: httpx.Client, seats: int = 10, price: str = "50.00", **extra) -> dict:
    """A fresh organizer with one event of one category: ids, organizer and a ready hold/order body."""
    org = person("organizer") if _ctx else register(http, "organizer")
    event = create_event(http, org, seats=seats, price=price, **extra)
    cat = event["ticketCategories"][0]
    return {"org": org, "event": event["idEvent"], "category": cat["id"], "seats": seats,
            "body": {"eventId": event["idEvent"], "categoryId": cat["id"]}}


def db_counters(db, category_id: int) -> dict:
    with db.connect() as conn:
        row = conn.execute(text("SELECT total_seats, held_seats, sold_seats FROM ticket_categories WHERE id = :c"),
                           {"c": category_id}).one()
    return {"total": row.total_seats, "held": row.held_seats, "sold": row.sold_seats}


def db_rows(db, category_id: int) -> dict:
    """Held and sold seats as the rows of holds and orders say."""
    with db.connect() as conn:
        held = conn.execute(text("SELECT coalesce(sum(quantity), 0) FROM holds "
                                 "WHERE category_id = :c AND status = 'active'"), {"c": category_id}).scalar()
        sold = conn.execute(text("SELECT coalesce(sum(quantity), 0) FROM orders "
                                 f"WHERE category_id = :c AND status IN {SOLD_STATUSES_SQL}"), {"c": category_id}).scalar()
    return {"held": held, "sold": sold}


def hold_status(db, hold_id: str) -> str | None:
    with db.connect() as conn:
        return conn.execute(text("SELECT status FROM holds WHERE id = :h"), {"h": hold_id}).scalar()


def order_rows(db, category_id: int) -> list:
    with db.connect() as conn:
        return list(conn.execute(text("SELECT * FROM orders WHERE category_id = :c ORDER BY id"),
                                 {"c": category_id}).all())


def api_available(http: httpx.Client, event_id: int, category_id: int, headers: dict | None = None) -> int:
    r = http.get(f"/api/events/{event_id}/tickets", headers=headers or {})
    assert r.status_code == 200, r.text
    return next(c["availableSeats"] for c in r.json() if c["id"] == category_id)


def actor_figures(event_id: int, category_id: int) -> dict:
    import ray

    handle = ray.get_actor(f"category:{event_id}:{category_id}", namespace="ticketing")
    return ray.get(handle.figures.remote(), timeout=60)


def assert_consistent(db, http: httpx.Client, event_id: int, category_id: int, *, headers: dict | None = None,
                      check_actor: bool = True) -> dict:
    """Nothing oversold, counters == rows, each hold became at most one order of its own owner and
    quantity, and the API and the actor agree with the database. Returns the counters."""
    counters = db_counters(db, category_id)
    assert counters["held"] + counters["sold"] <= counters["total"], counters
    assert counters["held"] >= 0 and counters["sold"] >= 0, counters
    assert db_rows(db, category_id) == {"held": counters["held"], "sold": counters["sold"]}, counters
    with db.connect() as conn:
        doubled = conn.execute(text("SELECT hold_id FROM orders WHERE category_id = :c AND hold_id IS NOT NULL "
                                    "GROUP BY hold_id HAVING count(*) > 1"), {"c": category_id}).all()
        assert doubled == []
        mismatched = conn.execute(text(
            "SELECT o.id FROM orders o JOIN holds h ON h.id = o.hold_id WHERE o.category_id = :c "
            "AND (h.status <> 'confirmed' OR h.user_id <> o.user_id OR h.quantity <> o.quantity "
            "     OR h.category_id <> o.category_id)"), {"c": category_id}).all()
        assert mismatched == []
        users_with_two = conn.execute(text(
            "SELECT user_id FROM holds WHERE category_id = :c AND status = 'active' GROUP BY user_id "
            "HAVING count(*) > 1"), {"c": category_id}).all()
        assert users_with_two == []
    available = counters["total"] - counters["held"] - counters["sold"]
    assert api_available(http, event_id, category_id, headers) == available
    if check_actor:
        figures = actor_figures(event_id, category_id)
        assert (figures["soldSeats"], figures["heldSeats"], figures["availableSeats"]) == (
            counters["sold"], counters["held"], available), (figures, counters)
    return counters


def wait_until(condition, timeout: float = 30.0, interval: float = 0.1):
    """Poll until `condition()` is truthy (returns it) or fail; a deadline, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


def make_past(db, event_id: int) -> None:
    """Move an event into the past directly in the database, and tell its category actors (which were
    loaded when the event was created), as an edit through the API would."""
    import ray

    from actors import NAMESPACE, category_actor_name

    with db.begin() as conn:
        conn.execute(text("UPDATE events SET event_date = :d WHERE id = :e"),
                     {"d": datetime.now(timezone.utc) - timedelta(days=1), "e": event_id})
        categories = conn.execute(text("SELECT id FROM ticket_categories WHERE event_id = :e"),
                                  {"e": event_id}).scalars().all()
    for category_id in categories:
        try:
            actor = ray.get_actor(category_actor_name(event_id, category_id), namespace=NAMESPACE)
        except ValueError:
            continue
        ray.get(actor.refresh.remote())


def many_buyers(db, jwt_secret: str, n: int, role: str = "assistant") -> list[dict]:
    """`n` users inserted straight into the database with tokens signed by the server's secret
    (registering hundreds through argon2 would dominate a rush test; auth is tested elsewhere)."""
    from domain.auth import issue_token
    from tests.helpers import unique

    names = [unique(role) for _ in range(n)]
    with db.begin() as conn:
        ids = [conn.execute(text("INSERT INTO users (username, password_hash, role) VALUES (:u, 'x', :r) "
                                 "RETURNING id"), {"u": name, "r": role}).scalar() for name in names]
    return [{"id": i, "username": name, "role": role,
             "headers": {"Authorization": f"Bearer {issue_token(i, name, role, jwt_secret, 3600)}"}}
            for i, name in zip(ids, names)]


def configure_actor(event_id: int, category_id: int, hold_seconds: float, max_per_order: int = 10) -> None:
    """Change a running category actor's tunables (new holds only)."""
    import ray

    handle = ray.get_actor(f"category:{event_id}:{category_id}", namespace="ticketing")
    ray.get(handle.configure.remote({"hold_seconds": hold_seconds, "max_per_order": max_per_order}), timeout=60)
