"""The database refuses an oversell on its own, whatever the application does (raw SQL, no actor)."""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests.helpers import unique
from ticketing.invariants import read_seat_ledger


@pytest.fixture()
def cat(db):
    """A fresh user, event and ticket category with 10 seats; returns their ids."""
    with db.begin() as conn:
        user = conn.execute(text("INSERT INTO users (username, password_hash, role) "
                                 "VALUES (:u, 'x', 'organizer') RETURNING id"), {"u": unique()}).scalar()
        buyer = conn.execute(text("INSERT INTO users (username, password_hash) VALUES (:u, 'x') RETURNING id"),
                             {"u": unique()}).scalar()
        event = conn.execute(text("INSERT INTO events (name, category, event_date, created_by) "
                                  "VALUES ('E', 'music', now() + interval '30 days', :u) RETURNING id"),
                             {"u": user}).scalar()
        category = conn.execute(text("INSERT INTO ticket_categories (event_id, name, price, total_seats) "
                                     "VALUES (:e, 'General', 10, 10) RETURNING id"), {"e": event}).scalar()
    return {"user": buyer, "organizer": user, "event": event, "category": category}


def insert_hold(conn, cat, quantity=1, status="active", user=None):
    hold_id = uuid.uuid4()
    conn.execute(text(
        "INSERT INTO holds (id, event_id, category_id, user_id, quantity, status, created_at, expires_at) "
        "VALUES (:id, :e, :c, :u, :q, :s, now(), now() + interval '5 minutes')"),
        {"id": hold_id, "e": cat["event"], "c": cat["category"], "u": user or cat["user"], "q": quantity,
         "s": status})
    return hold_id


def insert_order(conn, cat, quantity=1, status="confirmed", hold_id=None, user=None):
    return conn.execute(text(
        "INSERT INTO orders (user_id, event_id, category_id, quantity, unit_price, total_price, status, "
        "event_name, category_name, hold_id) "
        "VALUES (:u, :e, :c, :q, 10, 10 * :q, :s, 'E', 'General', :h) RETURNING id"),
        {"u": user or cat["user"], "e": cat["event"], "c": cat["category"], "q": quantity, "s": status,
         "h": hold_id}).scalar()


def counters(db, cat) -> tuple[int, int]:
    ledger = read_seat_ledger(db, cat["category"])
    return ledger.held, ledger.sold


def from_rows(db, category_id) -> tuple[int, int]:
    ledger = read_seat_ledger(db, category_id)
    return ledger.held_rows, ledger.sold_rows


def refused(db, action, match: str = "") -> str:
    """Run `action(conn)` in its own transaction and show the database refused it (rolled back)."""
    with pytest.raises((IntegrityError, DBAPIError)) as info:
        with db.begin() as conn:
            action(conn)
    assert match in str(info.value.orig), str(info.value.orig)
    return str(info.value.orig)


# ---- capacity -----------------------------------------------------------------------------------


def test_held_plus_sold_above_total_is_refused(db, cat):
    with db.begin() as conn:
        insert_order(conn, cat, 6)
        insert_hold(conn, cat, 4)
    assert counters(db, cat) == (4, 6)
    other = {**cat, "user": cat["organizer"]}
    refused(db, lambda conn: insert_hold(conn, other, 1), "never_oversold")
    refused(db, lambda conn: insert_order(conn, other, 1), "never_oversold")
    assert counters(db, cat) == (4, 6)


def test_one_statement_overselling_many_rows_is_refused_whole(db, cat):
    def many(conn):
        conn.execute(text(
            "INSERT INTO orders (user_id, event_id, category_id, quantity, unit_price, total_price, status, "
            "event_name, category_name) SELECT :u, :e, :c, 1, 10, 10, 'confirmed', 'E', 'G' "
            "FROM generate_series(1, 11)"), {"u": cat["user"], "e": cat["event"], "c": cat["category"]})

    refused(db, many, "never_oversold")
    assert counters(db, cat) == (0, 0) and from_rows(db, cat["category"]) == (0, 0)


def test_counters_cannot_be_set_past_total_directly(db, cat):
    refused(db, lambda conn: conn.execute(text("UPDATE ticket_categories SET sold_seats = 11 WHERE id = :c"),
                                          {"c": cat["category"]}), "never_oversold")
    with db.begin() as conn:
        insert_order(conn, cat, 5)
    refused(db, lambda conn: conn.execute(text("UPDATE ticket_categories SET total_seats = 4 WHERE id = :c"),
                                          {"c": cat["category"]}), "never_oversold")


def test_reviving_a_released_hold_is_refused_so_it_cannot_oversell(db, cat):
    with db.begin() as conn:
        old = insert_hold(conn, cat, 5)
        conn.execute(text("UPDATE holds SET status = 'released' WHERE id = :h"), {"h": old})
        insert_order(conn, cat, 10)
    refused(db, lambda conn: conn.execute(text("UPDATE holds SET status = 'active' WHERE id = :h"), {"h": old}))
    assert counters(db, cat) == (0, 10)


# ---- negative counts ------------------------------------------------------------------------------


@pytest.mark.parametrize("column, guard", [("held_seats", "held_seats_not_negative"),
                                           ("sold_seats", "sold_seats_not_negative"),
                                           ("total_seats", "violates check constraint")])
def test_negative_counts_are_refused(db, cat, column, guard):
    refused(db, lambda conn: conn.execute(text(f"UPDATE ticket_categories SET {column} = -1 WHERE id = :c"),
                                          {"c": cat["category"]}), guard)
    assert counters(db, cat) == (0, 0)


@pytest.mark.parametrize("quantity", [0, -5])
def test_zero_or_negative_quantities_are_refused(db, cat, quantity):
    refused(db, lambda conn: insert_hold(conn, cat, quantity), "quantity_positive")
    refused(db, lambda conn: insert_order(conn, cat, quantity), "quantity_positive")
    assert counters(db, cat) == (0, 0)


def test_deleting_more_than_was_counted_cannot_go_negative(db, cat):
    """Even a counter knocked out of step by hand cannot be driven below zero by row changes."""
    with db.begin() as conn:
        order = insert_order(conn, cat, 3)
    refused(db, lambda conn: [
        conn.execute(text("UPDATE ticket_categories SET sold_seats = 1 WHERE id = :c"), {"c": cat["category"]}),
        conn.execute(text("UPDATE orders SET status = 'cancelled' WHERE id = :o"), {"o": order}),
    ], "not_negative")


def test_order_total_must_be_unit_price_times_quantity(db, cat):
    refused(db, lambda conn: conn.execute(text(
        "INSERT INTO orders (user_id, event_id, category_id, quantity, unit_price, total_price, status, "
        "event_name, category_name) VALUES (:u, :e, :c, 2, 10, 5, 'confirmed', 'E', 'G')"),
        {"u": cat["user"], "e": cat["event"], "c": cat["category"]}), "total_is_unit_times_quantity")


# ---- transitions ------------------------------------------------------------------------------------


def test_confirming_a_hold_twice_is_refused(db, cat):
    with db.begin() as conn:
        hold = insert_hold(conn, cat, 2)
        conn.execute(text("UPDATE holds SET status = 'confirmed' WHERE id = :h"), {"h": hold})
        insert_order(conn, cat, 2, hold_id=hold)
    for status in ("active", "released", "expired"):
        refused(db, lambda conn: conn.execute(text("UPDATE holds SET status = :s WHERE id = :h"),
                                              {"s": status, "h": hold}), "already confirmed")
    # a second order for the same hold is the other way to confirm it twice
    refused(db, lambda conn: insert_order(conn, cat, 2, hold_id=hold), "orders_hold_id_key")
    assert counters(db, cat) == (0, 2)


@pytest.mark.parametrize("closed", ["released", "expired"])
def test_closed_hold_cannot_be_confirmed(db, cat, closed):
    with db.begin() as conn:
        hold = insert_hold(conn, cat, 2)
        conn.execute(text("UPDATE holds SET status = :s WHERE id = :h"), {"s": closed, "h": hold})
    refused(db, lambda conn: conn.execute(text("UPDATE holds SET status = 'confirmed' WHERE id = :h"),
                                          {"h": hold}), f"already {closed}")


def test_hold_and_order_are_immutable_except_status(db, cat):
    with db.begin() as conn:
        hold = insert_hold(conn, cat, 2)
        order = insert_order(conn, cat, 2)
    refused(db, lambda conn: conn.execute(text("UPDATE holds SET quantity = 1 WHERE id = :h"), {"h": hold}),
            "immutable")
    refused(db, lambda conn: conn.execute(text("UPDATE orders SET quantity = 1, total_price = 10 WHERE id = :o"),
                                          {"o": order}), "immutable")
    refused(db, lambda conn: conn.execute(text("UPDATE orders SET user_id = :u WHERE id = :o"),
                                          {"u": cat["organizer"], "o": order}), "immutable")


def test_reviving_a_cancelled_order_is_refused(db, cat):
    with db.begin() as conn:
        order = insert_order(conn, cat, 3)
        conn.execute(text("UPDATE orders SET status = 'cancelled' WHERE id = :o"), {"o": order})
    for status in ("confirmed", "pending", "completed"):
        refused(db, lambda conn: conn.execute(text("UPDATE orders SET status = :s WHERE id = :o"),
                                              {"s": status, "o": order}), "already cancelled")
    assert counters(db, cat) == (0, 0)


def test_cancelling_twice_is_refused_and_frees_the_seats_once(db, cat):
    with db.begin() as conn:
        keep = insert_order(conn, cat, 4)
        order = insert_order(conn, cat, 3)
    with db.begin() as conn:
        conn.execute(text("UPDATE orders SET status = 'cancelled' WHERE id = :o"), {"o": order})
    refused(db, lambda conn: conn.execute(text("UPDATE orders SET status = 'cancelled' WHERE id = :o"),
                                          {"o": order}), "already cancelled")
    assert counters(db, cat) == (0, 4) == from_rows(db, cat["category"])
    assert keep


def test_two_concurrent_cancels_free_the_seats_once(db, cat):
    """Two transactions cancel the same order at once; the row lock serialises them."""
    with db.begin() as conn:
        insert_order(conn, cat, 2)
        order = insert_order(conn, cat, 5)
    first_updated = threading.Event()
    results = []

    def cancel(wait_for_other: bool):
        try:
            with db.begin() as conn:
                if wait_for_other:
                    first_updated.wait(10)
                conn.execute(text("UPDATE orders SET status = 'cancelled' WHERE id = :o"), {"o": order})
                if not wait_for_other:
                    first_updated.set()
                    conn.execute(text("SELECT pg_sleep(0.3)"))  # keep the row locked while the other waits
            results.append("cancelled")
        except DBAPIError as exc:
            assert "already cancelled" in str(exc.orig)
            results.append("refused")

    threads = [threading.Thread(target=cancel, args=(flag,)) for flag in (False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["cancelled", "refused"]
    assert counters(db, cat) == (0, 2) == from_rows(db, cat["category"])


def test_pending_order_may_be_confirmed_once(db, cat):
    with db.begin() as conn:
        order = insert_order(conn, cat, 2, status="pending")
    assert counters(db, cat) == (0, 0)
    with db.begin() as conn:
        conn.execute(text("UPDATE orders SET status = 'confirmed' WHERE id = :o"), {"o": order})
    assert counters(db, cat) == (0, 2)
    refused(db, lambda conn: conn.execute(text("UPDATE orders SET status = 'pending' WHERE id = :o"),
                                          {"o": order}), "cannot go from confirmed")


# ---- uniqueness ------------------------------------------------------------------------------------


def test_two_orders_for_one_hold_are_refused(db, cat):
    with db.begin() as conn:
        hold = insert_hold(conn, cat, 1, status="confirmed")
        insert_order(conn, cat, 1, hold_id=hold)
    refused(db, lambda conn: insert_order(conn, {**cat, "user": cat["organizer"]}, 1, hold_id=hold),
            "orders_hold_id_key")
    assert counters(db, cat) == (0, 1)


def test_two_active_holds_per_user_and_category_are_refused(db, cat):
    with db.begin() as conn:
        insert_hold(conn, cat, 1)
    refused(db, lambda conn: insert_hold(conn, cat, 1), "one_active_hold_per_user_and_category")
    # closed holds do not count, and other users are not affected
    with db.begin() as conn:
        insert_hold(conn, cat, 1, status="released")
        insert_hold(conn, cat, 1, user=cat["organizer"])
    assert counters(db, cat) == (2, 0)


def test_same_idempotency_key_twice_for_one_user_is_refused(db, cat):
    def order_with_key(conn, user):
        conn.execute(text(
            "INSERT INTO orders (user_id, event_id, category_id, quantity, unit_price, total_price, status, "
            "event_name, category_name, idempotency_key) VALUES (:u, :e, :c, 1, 10, 10, 'confirmed', 'E', 'G', 'k')"),
            {"u": user, "e": cat["event"], "c": cat["category"]})

    with db.begin() as conn:
        order_with_key(conn, cat["user"])
        order_with_key(conn, cat["organizer"])  # keys are per user
    refused(db, lambda conn: order_with_key(conn, cat["user"]), "one_order_per_idempotency_key")
    assert counters(db, cat) == (0, 2)


# ---- counters follow the rows -------------------------------------------------------------------------


def test_counter_triggers_keep_held_and_sold_equal_to_the_rows(db, cat):
    with db.begin() as conn:
        other = conn.execute(text("INSERT INTO ticket_categories (event_id, name, price, total_seats) "
                                  "VALUES (:e, 'VIP', 10, 20) RETURNING id"), {"e": cat["event"]}).scalar()
    vip = {**cat, "category": other}
    users = [cat["user"], cat["organizer"]]

    def check(general, vip_seats):
        assert counters(db, cat) == from_rows(db, cat["category"]) == general
        assert counters(db, vip) == from_rows(db, other) == vip_seats

    with db.begin() as conn:
        h1 = insert_hold(conn, cat, 3, user=users[0])
        h2 = insert_hold(conn, cat, 2, user=users[1])
        h3 = insert_hold(conn, vip, 4, user=users[0])
    check((5, 0), (4, 0))
    with db.begin() as conn:  # one statement touching holds of both categories
        conn.execute(text("UPDATE holds SET status = 'confirmed' WHERE id IN (:a, :b)"), {"a": h1, "b": h3})
        insert_order(conn, cat, 3, hold_id=h1, user=users[0])
        insert_order(conn, vip, 4, hold_id=h3, user=users[0])
    check((2, 3), (0, 4))
    with db.begin() as conn:
        conn.execute(text("UPDATE holds SET status = 'expired' WHERE id = :h"), {"h": h2})
        o = insert_order(conn, cat, 1, user=users[1])
        insert_order(conn, cat, 2, status="pending", user=users[1])
    check((0, 4), (0, 4))
    with db.begin() as conn:
        conn.execute(text("UPDATE orders SET status = 'cancelled' WHERE id = :o"), {"o": o})
        conn.execute(text("UPDATE orders SET status = 'confirmed' WHERE status = 'pending' AND category_id = :c"),
                     {"c": cat["category"]})
        insert_hold(conn, vip, 7, user=users[1])
    check((0, 5), (7, 4))
    with db.begin() as conn:  # deletes count too (cleanup of old rows)
        conn.execute(text("DELETE FROM holds WHERE category_id = :c AND status = 'active'"), {"c": other})
        conn.execute(text("DELETE FROM orders WHERE category_id = :c AND status = 'cancelled'"),
                     {"c": cat["category"]})
    check((0, 5), (0, 4))


def test_updates_without_status_change_leave_counters_alone(db, cat):
    """Updates that do not change a status must not move the counters."""
    with db.begin() as conn:
        h = insert_hold(conn, cat, 4)
    assert counters(db, cat) == from_rows(db, cat["category"]) == (4, 0)
    with db.begin() as conn:
        conn.execute(text("UPDATE holds SET session_id = 'x' WHERE id = :h"), {"h": h})
    assert counters(db, cat) == from_rows(db, cat["category"]) == (4, 0)
    with db.begin() as conn:
        conn.execute(text("UPDATE holds SET status = 'released' WHERE id = :h"), {"h": h})
    assert counters(db, cat) == from_rows(db, cat["category"]) == (0, 0)
    with db.begin() as conn:
        o = insert_order(conn, cat, 6)
        conn.execute(text("UPDATE orders SET notes = 'n' WHERE id = :o"), {"o": o})
    assert counters(db, cat) == from_rows(db, cat["category"]) == (0, 6)
    with db.begin() as conn:
        conn.execute(text("UPDATE orders SET status = 'completed' WHERE id = :o"), {"o": o})
    assert counters(db, cat) == from_rows(db, cat["category"]) == (0, 6)


# ---- the per-account ticket limit of an event (buyer_tickets) ------------------------------------------


def tickets(db, cat, user=None) -> int | None:
    """The account's count in `buyer_tickets` for the event (None: no row)."""
    with db.connect() as conn:
        return conn.execute(text("SELECT tickets FROM buyer_tickets WHERE event_id = :e AND user_id = :u"),
                            {"e": cat["event"], "u": user or cat["user"]}).scalar()


def set_limit(db, cat, limit) -> None:
    with db.begin() as conn:
        conn.execute(text("UPDATE events SET ticket_limit = :l WHERE id = :e"), {"l": limit, "e": cat["event"]})


@pytest.fixture()
def two(db, cat):
    """`cat` with a second category of the same event (10 seats each): {general, vip} as cat-like dicts."""
    with db.begin() as conn:
        vip = conn.execute(text("INSERT INTO ticket_categories (event_id, name, price, total_seats) "
                                "VALUES (:e, 'VIP', 10, 10) RETURNING id"), {"e": cat["event"]}).scalar()
    return {"general": cat, "vip": {**cat, "category": vip}}


def test_buyer_tickets_follow_holds_and_orders_across_categories(db, two):
    general, vip = two["general"], two["vip"]
    with db.begin() as conn:
        h1 = insert_hold(conn, general, 3)
        insert_hold(conn, vip, 2)
    assert tickets(db, general) == 5
    with db.begin() as conn:  # a hold that becomes an order moves its seats: counted once
        conn.execute(text("UPDATE holds SET status = 'confirmed' WHERE id = :h"), {"h": h1})
        o1 = insert_order(conn, general, 3, hold_id=h1)
    assert tickets(db, general) == 5
    with db.begin() as conn:
        conn.execute(text("UPDATE holds SET status = 'released' WHERE category_id = :c AND status = 'active'"),
                     {"c": vip["category"]})
    assert tickets(db, general) == 3
    with db.begin() as conn:
        h3 = insert_hold(conn, vip, 4)
        conn.execute(text("UPDATE holds SET status = 'expired' WHERE id = :h"), {"h": h3})
        conn.execute(text("UPDATE orders SET status = 'cancelled' WHERE id = :o"), {"o": o1})
    assert tickets(db, general) == 0
    with db.begin() as conn:  # pending orders do not count until confirmed; completing changes nothing
        pending = insert_order(conn, vip, 2, status="pending")
    assert tickets(db, general) == 0
    with db.begin() as conn:
        conn.execute(text("UPDATE orders SET status = 'confirmed' WHERE id = :o"), {"o": pending})
        conn.execute(text("UPDATE orders SET status = 'completed' WHERE id = :o"), {"o": pending})
    assert tickets(db, general) == 2
    assert tickets(db, general, general["organizer"]) is None  # other accounts untouched


def test_buyer_counts_are_found_by_key_however_many_rows_the_table_holds(db, cat):
    """A batch's buyers are locked and counted through the primary key (migration 0004): 0003's trigger
    scanned the whole table twice per statement once it held a few thousand rows, every buyer of every
    event. Done in a transaction that is rolled back, so the 20,000 accounts leave nothing behind."""
    with db.connect() as conn, conn.begin() as transaction:
        first = conn.execute(text(
            "INSERT INTO users (username, password_hash) SELECT 'bulk-' || g || '-' || :tag, 'x' "
            "FROM generate_series(1, 20000) g RETURNING id"), {"tag": unique()}).scalars().all()
        conn.execute(text("INSERT INTO buyer_tickets (event_id, user_id, tickets) "
                          "SELECT :e, u, 0 FROM unnest(CAST(:users AS int[])) u"),
                     {"e": cat["event"], "users": first[8:]})
        conn.execute(text("ANALYZE buyer_tickets"))

        def scans() -> int:
            return conn.execute(text("SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_xact_user_tables "
                                     "WHERE relname = 'buyer_tickets'")).scalar()

        before = scans()
        conn.execute(text(
            "INSERT INTO orders (user_id, event_id, category_id, quantity, unit_price, total_price, status, "
            "event_name, category_name) SELECT u, :e, :c, 1, 10, 10, 'confirmed', 'E', 'General' "
            "FROM unnest(CAST(:users AS int[])) u"), {"e": cat["event"], "c": cat["category"], "users": first[:8]})
        assert scans() == before
        assert conn.execute(text("SELECT count(*) FROM buyer_tickets WHERE event_id = :e AND tickets = 1"),
                            {"e": cat["event"]}).scalar() == 8
        transaction.rollback()


def test_a_hold_written_already_confirmed_with_its_order_counts_once(db, two):
    """Held and bought in one batch: the hold row is inserted as confirmed next to its order."""
    general = two["general"]
    set_limit(db, general, 4)
    with db.begin() as conn:
        h = insert_hold(conn, general, 3, status="confirmed")
        insert_order(conn, general, 3, hold_id=h)
    assert tickets(db, general) == 3
    refused(db, lambda conn: insert_order(conn, general, 2), "ticket limit")
    assert tickets(db, general) == 3


def test_a_queue_cannot_be_left_without_a_way_in(db, cat):
    """Queue on needs a rate, a cap or both (migration 0006): two edits at once cannot leave a queue that
    admits nobody."""
    def set_(sql):
        return lambda conn: conn.execute(text(f"UPDATE events SET {sql} WHERE id = :e"), {"e": cat["event"]})
    refused(db, set_("queue_enabled = true"), "queue_has_a_way_in")
    with db.begin() as conn:
        set_("queue_enabled = true, admission_per_minute = 60")(conn)
    refused(db, set_("admission_per_minute = NULL"), "queue_has_a_way_in")
    with db.begin() as conn:
        set_("max_shoppers = 5, admission_per_minute = NULL")(conn)  # a cap alone is a way in
        set_("queue_enabled = false, max_shoppers = NULL")(conn)  # no queue needs neither


def test_ticket_limit_refuses_any_statement_past_it_across_categories(db, two):
    general, vip = two["general"], two["vip"]
    set_limit(db, general, 4)
    with db.begin() as conn:
        insert_hold(conn, general, 2)
        insert_order(conn, vip, 1)
    refused(db, lambda conn: insert_order(conn, vip, 2), "ticket limit")
    refused(db, lambda conn: insert_hold(conn, vip, 2), "ticket limit")
    message = refused(db, lambda conn: [insert_order(conn, vip, 1), insert_order(conn, general, 1)])
    assert "ticket limit" in message
    assert tickets(db, general) == 3
    with db.begin() as conn:
        insert_order(conn, vip, 1)  # exactly the limit
        insert_order(conn, general, 4, user=general["organizer"])  # the limit is per account
    assert tickets(db, general) == 4 and tickets(db, general, general["organizer"]) == 4
    assert counters(db, general) == (2, 4)


def test_ticket_limit_violation_names_its_constraint_and_the_actor_maps_it(db, two):
    """The category actor's one-by-one retry turns this very error into the limit's refusal."""
    from actors.category import integrity_refusal
    from domain.inventory import CategoryInfo, CategoryInventory, Refusal

    set_limit(db, two["general"], 1)
    with pytest.raises(IntegrityError) as info:
        with db.begin() as conn:
            insert_order(conn, two["vip"], 2)
    assert info.value.orig.diag.constraint_name == "ticket_limit_per_account"
    inventory = CategoryInventory(CategoryInfo(two["general"]["event"], two["vip"]["category"], "E", "VIP", 10, 10,
                                               None, True, True, ticket_limit=1), [], [], hold_seconds=60,
                                  max_per_order=10)
    outcome = integrity_refusal(info.value, inventory)
    assert (outcome.refusal, outcome.limit, outcome.available) == (Refusal.TICKET_LIMIT, 1, 10)


def test_ticket_limit_lowered_below_counts_refuses_only_increases(db, two):
    general, vip = two["general"], two["vip"]
    with db.begin() as conn:
        hold = insert_hold(conn, general, 3)
        insert_order(conn, vip, 3)
    set_limit(db, general, 2)  # lowering below what an account has is allowed: nothing is taken away
    assert tickets(db, general) == 6
    refused(db, lambda conn: insert_order(conn, vip, 1), "ticket limit")
    with db.begin() as conn:  # freeing seats still works while above the limit
        conn.execute(text("UPDATE holds SET status = 'released' WHERE id = :h"), {"h": hold})
    assert tickets(db, general) == 3
    refused(db, lambda conn: insert_hold(conn, general, 1), "ticket limit")
    set_limit(db, general, 5)  # raised: room for 2 more
    with db.begin() as conn:
        insert_hold(conn, general, 2)
    refused(db, lambda conn: insert_order(conn, vip, 1), "ticket limit")
    set_limit(db, general, None)  # no limit
    with db.begin() as conn:
        insert_order(conn, vip, 6)
    assert tickets(db, general) == 11


def test_two_transactions_in_two_categories_cannot_pass_the_limit_together(db, two):
    """Each stays within the limit alone; the buyer's row lock makes the second see the first."""
    set_limit(db, two["general"], 4)
    first_inserted = threading.Event()
    results = {}

    def take(name, category, wait_for_other):
        try:
            with db.begin() as conn:
                if wait_for_other:
                    first_inserted.wait(10)
                insert_hold(conn, category, 3)
                if not wait_for_other:
                    first_inserted.set()
                    conn.execute(text("SELECT pg_sleep(0.3)"))  # keep the buyer's row locked while the other waits
            results[name] = "held"
        except DBAPIError as exc:
            assert "ticket limit" in str(exc.orig)
            results[name] = "refused"

    threads = [threading.Thread(target=take, args=("general", two["general"], False)),
               threading.Thread(target=take, args=("vip", two["vip"], True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"general": "held", "vip": "refused"}
    assert tickets(db, two["general"]) == 3
