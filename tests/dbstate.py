"""What the database holds, to prove that a rejected request changed nothing.

`unchanged(db)` compares row counts and a fingerprint of every row of users, events and ticket
categories before and after the block. The seat counters (held/sold) are left out on purpose: holds of
other tests may expire in the background and move them, which has nothing to do with the request.
"""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import text

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
