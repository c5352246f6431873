"""The one helpers module of the tests (fixtures live in conftest.py).

- HTTP: register a user, create an event, assert an error body.
- Database state: prove a refused request changed no row (`unchanged`), read a value.
- Seats: a fresh category with its organizer, users minted straight into the database, and the
  assertions that the counters equal the rows (ticketing.invariants), nothing is oversold, and the API
  and the category actor agree with the database.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import httpx
from sqlalchemy import text

from actors import NAMESPACE, category_actor_name
from ticketing.accounts import register_and_login, unique
from ticketing.invariants import read_seat_ledger

__all__ = ["unique"]  # re-exported: the tests import it from here

# ---- HTTP --------------------------------------------------------------------------------------------


def register(http: httpx.Client, role: str = "assistant", password: str = "s3cret-pass") -> dict:
    """A fresh user registered and logged in through the API: {id, username, role, password, token, headers}."""
    return register_and_login(http, password, role)


def future(days: int = 30) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


def create_event(http: httpx.Client, organizer: dict, seats: int = 10, price: str = "50.00", **extra) -> dict:
    body = {
        "eventName": unique("Concert"),
        "eventCategory": "music",
        "eventDate": future(),
        "location": "Arena",
        "ticketCategories": [{"categoryName": "General", "price": price, "totalSeats": seats}],
        **extra,
    }
    r = http.post("/api/events", json=body, headers=organizer["headers"])
    assert r.status_code == 201, r.text
    return r.json()


ERROR_KEYS = {"statusCode", "message", "error"}


def assert_error(r: httpx.Response, status: int, message: str | None = None) -> dict:
    """An error answer: the status, the {statusCode, message, error} body, and the exact message if given."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == ERROR_KEYS and body["statusCode"] == status, body
    if message is not None:
        assert body["message"] == message
    return body


def assert_error_containing(r: httpx.Response, status: int, text: str | None = None) -> dict:
    """Like assert_error, but the message (or one of a list of messages) only has to contain `text`."""
    body = assert_error(r, status)
    if text is not None:
        assert text in str(body["message"]), body
    return body


# ---- database state ----------------------------------------------------------------------------------
# `unchanged(db)` compares row counts and a fingerprint of every row of users, events and ticket
# categories before and after the block. The seat counters (held/sold) are left out on purpose: holds of
# other tests may expire in the background and move them, which has nothing to do with the request.

SNAPSHOT = text(
    """
    SELECT
      (SELECT count(*) FROM users) AS users,
      (SELECT count(*) FROM events) AS events,
      (SELECT count(*) FROM ticket_categories) AS ticket_categories,
      (SELECT md5(coalesce(string_agg(u::text, '|' ORDER BY u.id), '')) FROM users u) AS users_rows,
      (SELECT md5(coalesce(string_agg(e::text, '|' ORDER BY e.id), '')) FROM events e) AS events_rows,
      (SELECT md5(coalesce(string_agg(
          concat_ws(',', c.id, c.event_id, c.name, c.price, c.total_seats, c.description, c.is_active),
          '|' ORDER BY c.id), '')) FROM ticket_categories c) AS categories_rows
    """
)


def snapshot(db) -> dict:
    with db.connect() as conn:
        return dict(conn.execute(SNAPSHOT).mappings().one())


def counts(db) -> dict:
    return {k: v for k, v in snapshot(db).items() if not k.endswith("_rows")}


@contextmanager
def unchanged(db):
    """The block changes no row of users, events or ticket categories (a refused request)."""
    before = snapshot(db)
    yield
    after = snapshot(db)
    assert after == before, f"database changed: {before} -> {after}"


def scalar(db, sql: str, **params):
    with db.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def row(db, sql: str, **params):
    with db.connect() as conn:
        return conn.execute(text(sql), params).mappings().first()


def execute(db, sql: str, **params) -> None:
    with db.begin() as conn:
        conn.execute(text(sql), params)


# ---- seats ---------------------------------------------------------------------------------------------
# The database is the truth: its counters must equal its rows, never exceed capacity, and the API and
# the category actor must report the same figures.

_fast: dict = {}  # {db, secret} once the `fast_users` fixture (conftest.py) has run


def use_fast_users(db, jwt_secret: str) -> None:
    """Let `person()` mint users straight into the database (the `fast_users` fixture calls this)."""
    _fast.update(db=db, secret=jwt_secret)


def person(role: str = "assistant") -> dict:
    """A user inserted straight into the database with a token signed by the server's secret:
    registering through argon2 costs ~0.5 s a user, and auth has its own tests. Needs `fast_users`."""
    assert _fast, "person() needs the fast_users fixture (pytestmark = pytest.mark.usefixtures('fast_users'))"
    return many_buyers(_fast["db"], _fast["secret"], 1, role)[0]


def new_category(http: httpx.Client, seats: int = 10, price: str = "50.00", **extra) -> dict:
    """A fresh organizer with one event of one category: ids, organizer and a ready hold/order body."""
    org = person("organizer") if _fast else register(http, "organizer")
    event = create_event(http, org, seats=seats, price=price, **extra)
    cat = event["ticketCategories"][0]
    return {"org": org, "event": event["idEvent"], "category": cat["id"], "seats": seats,
            "body": {"eventId": event["idEvent"], "categoryId": cat["id"]}}


def db_counters(db, category_id: int) -> dict:
    """The category's counters: {total, held, sold}."""
    return read_seat_ledger(db, category_id).counters()


def db_rows(db, category_id: int) -> dict:
    """Held and sold seats as the rows of holds and orders say: {held, sold}."""
    return read_seat_ledger(db, category_id).rows()


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


def category_actor(event_id: int, category_id: int):
    """The running category actor's handle (by the name the deployments look it up under)."""
    import ray

    return ray.get_actor(category_actor_name(event_id, category_id), namespace=NAMESPACE)


def replace_category_actor(event_id: int, category_id: int, database_url: str, tunables: dict,
                           env: dict | None = None):
    """Stop the category's actor for good and start another under its name, with these creation
    `tunables` (and environment `env`), as an older deployment or another setting would have left it.
    Returns the new actor's handle once it has loaded the category."""
    import ray

    from actors.category import TicketCategory

    name = category_actor_name(event_id, category_id)
    ray.kill(category_actor(event_id, category_id), no_restart=True)

    def gone() -> bool:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return True
        return False

    wait_until(gone, timeout=60, interval=0.1)
    options = {"runtime_env": {"env_vars": env}} if env else {}
    actor = TicketCategory.options(name=name, namespace=NAMESPACE, lifetime="detached", **options).remote(
        database_url, event_id, category_id, tunables)
    ray.get(actor.figures.remote(), timeout=120)
    return actor


def actor_figures(event_id: int, category_id: int) -> dict:
    import ray

    return ray.get(category_actor(event_id, category_id).figures.remote(), timeout=60)


def assert_consistent(db, http: httpx.Client, event_id: int, category_id: int, *, headers: dict | None = None,
                      check_actor: bool = True) -> dict:
    """Nothing oversold, counters == rows, each hold became at most one order of its own owner and
    quantity, and the API and the actor agree with the database. Returns the counters."""
    ledger = read_seat_ledger(db, category_id)
    counters = ledger.counters()
    assert counters["held"] + counters["sold"] <= counters["total"], counters
    assert counters["held"] >= 0 and counters["sold"] >= 0, counters
    assert ledger.rows() == {"held": counters["held"], "sold": counters["sold"]}, counters
    assert ledger.ok, ledger
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
    loaded when the event was created), as an edit through the API would. The ingress replicas are not
    told (an edit through the API would announce it): their cached sale settings, which the creation's
    announcement had them read again, may be a second old, so that second is waited out."""
    import ray

    from deployments.waiting_room import SALE_CACHE_SECONDS

    with db.begin() as conn:
        conn.execute(text("UPDATE events SET event_date = :d WHERE id = :e"),
                     {"d": datetime.now(timezone.utc) - timedelta(days=1), "e": event_id})
        categories = conn.execute(text("SELECT id FROM ticket_categories WHERE event_id = :e"),
                                  {"e": event_id}).scalars().all()
    for category_id in categories:
        try:
            actor = category_actor(event_id, category_id)
        except ValueError:
            continue
        ray.get(actor.refresh.remote())
    time.sleep(SALE_CACHE_SECONDS + 0.5)


def many_buyers(db, jwt_secret: str, n: int, role: str = "assistant") -> list[dict]:
    """`n` users inserted straight into the database with tokens signed by the server's secret
    (registering hundreds through argon2 would dominate a rush test; auth is tested elsewhere)."""
    from domain.auth import issue_token

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

    ray.get(category_actor(event_id, category_id).configure.remote(
        {"hold_seconds": hold_seconds, "max_per_order": max_per_order}), timeout=60)
