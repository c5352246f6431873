"""storage.inventory_store against real PostgreSQL: a batch's holds are one INSERT statement (so the
statement-level triggers run once a batch, not once a hold), a batch's orders each get their own row's
id, and the write rehearsal of a new actor leaves nothing behind."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import text

from domain.inventory import ActiveHold, CategoryInfo, Changes, NewOrder, SoldOrder
from domain.vocabulary import HoldStatus
from storage.database import make_engine
from storage.inventory_store import StaleWrite, find_written_batch, rehearse_writes, write_batch, write_changes
from tests.helpers import many_buyers, person, row, scalar

pytestmark = pytest.mark.usefixtures("fast_users")  # person() mints users straight into the database


def category_in_database(db, seats: int = 100, ticket_limit: int | None = None) -> CategoryInfo:
    """An event with one category, inserted with SQL (no actor is made for it)."""
    organizer = person("organizer")
    date = datetime.now(timezone.utc) + timedelta(days=30)
    with db.begin() as conn:
        event = conn.execute(text(
            "INSERT INTO events (name, category, event_date, created_by, ticket_limit) "
            "VALUES ('Store test', 'test', :d, :o, :l) RETURNING id"),
            {"d": date, "o": organizer["id"], "l": ticket_limit}).scalar()
        category = conn.execute(text(
            "INSERT INTO ticket_categories (event_id, name, price, total_seats) VALUES (:e, 'Floor', 10, :s) "
            "RETURNING id"), {"e": event, "s": seats}).scalar()
    return CategoryInfo(event_id=event, category_id=category, event_name="Store test", category_name="Floor",
                        price=Decimal("10"), total_seats=seats, event_date=date, event_active=True,
                        category_active=True, ticket_limit=ticket_limit)


def rehearse(database_url: str, info: CategoryInfo) -> None:
    """`rehearse_writes` on a connection of its own, as a new category actor runs it."""

    async def run() -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                await rehearse_writes(conn, info, datetime.now(timezone.utc))
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_a_batch_of_holds_is_written_as_one_statement(db, database_url, jwt_secret):
    info = category_in_database(db)
    buyers = many_buyers(db, jwt_secret, 30)
    now = datetime.now(timezone.utc)
    holds = [ActiveHold(uuid.uuid4(), b["id"], 1, now, now + timedelta(minutes=5)) for b in buyers]
    changes = Changes(new_holds={h.id: (h, HoldStatus.ACTIVE) for h in holds})
    counter = f"count_statements_{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[int, int]:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                async with conn.begin() as transaction:  # rolled back: the trigger and the holds go
                    await conn.execute(text("CREATE TEMP TABLE statements (n int) ON COMMIT DROP"))
                    await conn.execute(text(
                        f"CREATE FUNCTION {counter}() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$ BEGIN INSERT INTO statements VALUES (1); RETURN NULL; END $$"))
                    await conn.execute(text(
                        f"CREATE TRIGGER {counter} AFTER INSERT ON holds FOR EACH STATEMENT "
                        f"EXECUTE FUNCTION {counter}()"))
                    await write_changes(conn, info, changes, now)
                    statements = (await conn.execute(text("SELECT count(*) FROM statements"))).scalar()
                    held = (await conn.execute(text("SELECT held_seats FROM ticket_categories WHERE id = :c"),
                                               {"c": info.category_id})).scalar()
                    await transaction.rollback()
            return statements, held
        finally:
            await engine.dispose()

    statements, held = asyncio.run(scenario())
    assert held == 30  # the counters' trigger saw every row
    assert statements == 1
    assert scalar(db, "SELECT count(*) FROM holds WHERE category_id = :c", c=info.category_id) == 0


def test_each_order_of_a_batch_gets_the_id_of_its_own_row(db, database_url, jwt_secret):
    # One statement writes the batch and its ids come back unordered: each buyer must still be told
    # the id of the row that holds their own order.
    info = category_in_database(db, seats=200)
    buyers = many_buyers(db, jwt_secret, 12)
    now = datetime.now(timezone.utc)
    orders = [NewOrder(b["id"], 1 + i % 3, info.price, info.event_name, info.category_name,
                       None if i % 2 else f"note {i}", None, None if i % 4 else f"key-{i}")
              for i, b in enumerate(buyers)]

    async def write() -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await write_changes(conn, info, Changes(new_orders=orders), now)
        finally:
            await engine.dispose()

    asyncio.run(write())
    assert len({o.id for o in orders}) == len(orders)
    for order in orders:
        written = row(db, "SELECT user_id, quantity, notes, idempotency_key, total_price, status, created_at "
                          "FROM orders WHERE id = :i", i=order.id)
        assert (written.user_id, written.quantity, written.notes, written.idempotency_key) == (
            order.user_id, order.quantity, order.notes, order.idempotency_key)
        assert written.total_price == order.total_price and written.status == "confirmed"
        assert written.created_at == order.created_at == now
    assert scalar(db, "SELECT sold_seats FROM ticket_categories WHERE id = :c", c=info.category_id) == sum(
        o.quantity for o in orders)


def test_a_batch_that_changes_rows_is_all_or_nothing(db, database_url, jwt_secret):
    """`write_batch` writes every batch as one statement (autocommit: one round trip): when a hold it
    closes turns out not to be active (StaleWrite), what the statement changed before is undone with it."""
    info = category_in_database(db)
    buyer = many_buyers(db, jwt_secret, 1)[0]
    now = datetime.now(timezone.utc)
    hold = ActiveHold(uuid.uuid4(), buyer["id"], 2, now, now + timedelta(minutes=5))

    async def scenario() -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            await write_batch(engine, info, Changes(new_holds={hold.id: (hold, HoldStatus.ACTIVE)}), now)
            wrong = Changes(hold_status={hold.id: HoldStatus.RELEASED, uuid.uuid4(): HoldStatus.EXPIRED})
            with pytest.raises(StaleWrite):
                await write_batch(engine, info, wrong, now)
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    assert scalar(db, "SELECT status FROM holds WHERE id = :h", h=hold.id) == "active"
    assert scalar(db, "SELECT held_seats FROM ticket_categories WHERE id = :c", c=info.category_id) == 2


def test_a_batch_is_found_in_the_database_by_any_kind_of_change_it_made(db, database_url, jwt_secret):
    """`find_written_batch`, asked after a write whose answer was lost: None for a batch that is not there,
    for each kind of change; and for one that is, its orders' ids in the batch's order."""
    info = category_in_database(db)
    buyers = many_buyers(db, jwt_secret, 3)
    start = datetime.now(timezone.utc)
    hold = ActiveHold(uuid.uuid4(), buyers[0]["id"], 2, start, start + timedelta(minutes=5))
    steps = [  # each batch, decided a moment after the one before
        Changes(new_holds={hold.id: (hold, HoldStatus.ACTIVE)}),
        Changes(hold_status={hold.id: HoldStatus.CONFIRMED},
                new_orders=[NewOrder(buyers[0]["id"], 2, info.price, info.event_name, info.category_name, None,
                                     hold.id, None)]),
        Changes(new_orders=[NewOrder(b["id"], 1, info.price, info.event_name, info.category_name, None, None, None)
                            for b in buyers[1:]]),
        None,  # the cancellation of an order of the batch before, once it has its id
    ]
    found: list = []

    async def scenario() -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            for n, changes in enumerate(steps):
                if changes is None:
                    changes = steps[n] = Changes(cancelled_orders=[SoldOrder(steps[2].new_orders[0].id,
                                                                             buyers[1]["id"], 1)])
                now = start + timedelta(milliseconds=n + 1)
                before = await find_written_batch(engine, info, changes, now)
                await write_batch(engine, info, changes, now)
                after = await find_written_batch(engine, info, changes, now)
                found.append((before, after, [(o.id, o.created_at) for o in changes.new_orders]))
            released = Changes(hold_status={uuid.uuid4(): HoldStatus.RELEASED})  # no such hold: nothing to find
            found.append((await find_written_batch(engine, info, released, start), None, None))
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    for before, after, orders in found[:4]:
        assert before is None
        assert after == orders  # [] for a batch without orders
    assert found[4][0] is None


def test_a_full_category_frees_seats_before_it_takes_them_within_one_batch(db, database_url, jwt_secret):
    """Every batch is one statement (migration 0005) and the counters' CHECK (held + sold <= total) is
    tested after each of its inner statements: at capacity, a batch that confirms one hold into an order,
    releases another and gives the freed seat to a new hold must free before it takes."""
    info = category_in_database(db, seats=2)
    first, second, third = many_buyers(db, jwt_secret, 3)
    now = datetime.now(timezone.utc)
    a, b = (ActiveHold(uuid.uuid4(), buyer["id"], 1, now, now + timedelta(minutes=5)) for buyer in (first, second))
    c = ActiveHold(uuid.uuid4(), third["id"], 1, now, now + timedelta(minutes=5))
    order = NewOrder(first["id"], 1, info.price, info.event_name, info.category_name, None, a.id, None)

    async def scenario() -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            await write_batch(engine, info, Changes(new_holds={h.id: (h, HoldStatus.ACTIVE) for h in (a, b)}), now)
            await write_batch(engine, info, Changes(
                hold_status={a.id: HoldStatus.CONFIRMED, b.id: HoldStatus.RELEASED},
                new_holds={c.id: (c, HoldStatus.ACTIVE)}, new_orders=[order]), now)
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    counters = row(db, "SELECT held_seats, sold_seats FROM ticket_categories WHERE id = :c", c=info.category_id)
    assert (counters.held_seats, counters.sold_seats) == (1, 1)
    assert scalar(db, "SELECT hold_id FROM orders WHERE id = :o", o=order.id) == a.id
    assert scalar(db, "SELECT status FROM holds WHERE id = :h", h=b.id) == "released"


@pytest.mark.parametrize("ticket_limit", [None, 4])
def test_the_write_rehearsal_runs_every_write_and_leaves_nothing(db, database_url, ticket_limit):
    info = category_in_database(db, ticket_limit=ticket_limit)

    def state() -> dict:
        return {
            "category": dict(row(db, "SELECT held_seats, sold_seats FROM ticket_categories WHERE id = :c",
                                 c=info.category_id)),
            "holds": scalar(db, "SELECT count(*) FROM holds WHERE category_id = :c", c=info.category_id),
            "orders": scalar(db, "SELECT count(*) FROM orders WHERE category_id = :c", c=info.category_id),
            "buyer_tickets": scalar(db, "SELECT count(*) FROM buyer_tickets WHERE event_id = :e", e=info.event_id),
        }

    before = state()
    next_order_id_before = scalar(db, "SELECT nextval('orders_id_seq')")

    rehearse(database_url, info)
    assert state() == before
    # It did reach the orders (their ids come from the sequence, which a rollback does not give back).
    assert scalar(db, "SELECT nextval('orders_id_seq')") == next_order_id_before + 3


def test_a_sold_out_category_ends_the_rehearsal_early_and_quietly(db, database_url):
    info = category_in_database(db, seats=0)

    rehearse(database_url, info)  # the database refuses the hold (no seat): no error escapes
    assert scalar(db, "SELECT count(*) FROM holds WHERE category_id = :c", c=info.category_id) == 0
