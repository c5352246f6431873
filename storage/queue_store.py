"""An event's waiting room in PostgreSQL: its sale settings, places and admissions.

The queue actor is the only writer of `queue_entries` and `event_queues`; migration 0003's triggers
refuse a second admission, a changed place and an admission out of order whatever the writer does.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.queue import Place
from domain.sale import SaleSettings
from domain.vocabulary import HoldStatus, OrderStatus, QueueStatus
from storage.models import Event, EventQueue, Hold, Order, QueueEntry


@dataclass(frozen=True)
class EventSale:
    """What the queue and the ingress need to know about an event to sell it."""

    event_id: int
    active: bool
    event_date: datetime
    settings: SaleSettings


def _settings(row) -> SaleSettings:
    return SaleSettings(
        sale_starts_at=row.sale_starts_at,
        queue_enabled=row.queue_enabled,
        queue_paused=row.queue_paused,
        admission_per_minute=row.admission_per_minute,
        max_shoppers=row.max_shoppers,
        shopping_minutes=row.shopping_minutes,
        ticket_limit=row.ticket_limit,
    )


async def event_sale(conn: AsyncConnection, event_id: int) -> EventSale | None:
    row = (await conn.execute(select(Event.__table__).where(Event.id == event_id))).first()
    if row is None:
        return None
    return EventSale(row.id, row.is_active, row.event_date, _settings(row))


async def read_event_sale(engine: AsyncEngine, event_id: int) -> EventSale | None:
    async with engine.connect() as conn:
        return await event_sale(conn, event_id)


async def load_places(conn: AsyncConnection, event_id: int) -> tuple[datetime | None, list[Place]]:
    """When the pre-queue was drawn (None: not yet) and every entry of the event, by place then arrival."""
    drawn_at = (await conn.execute(select(EventQueue.drawn_at).where(EventQueue.event_id == event_id))).scalar()
    rows = (await conn.execute(
        select(QueueEntry.user_id, QueueEntry.place, QueueEntry.status, QueueEntry.admitted_at,
               QueueEntry.pass_expires_at)
        .where(QueueEntry.event_id == event_id)
        .order_by(QueueEntry.place.nulls_last(), QueueEntry.arrival)
    )).all()
    return drawn_at, [Place(r.user_id, r.place, r.status, r.admitted_at, r.pass_expires_at) for r in rows]


async def add_places(conn: AsyncConnection, event_id: int, joins: list[tuple[int, int | None]],
                     now: datetime) -> set[int]:
    """Insert (user, place) entries; place None = pre-queue. Returns the users inserted (an account that
    already has an entry keeps it: ON CONFLICT DO NOTHING)."""
    if not joins:
        return set()
    statement = pg_insert(QueueEntry).values([
        {"event_id": event_id, "user_id": user_id, "place": place, "joined_at": now} for user_id, place in joins
    ]).on_conflict_do_nothing(index_elements=["event_id", "user_id"]).returning(QueueEntry.user_id)
    return set((await conn.execute(statement)).scalars().all())


async def record_draw(conn: AsyncConnection, event_id: int, order: list[int], first: int, now: datetime) -> None:
    """Give the pre-queue its places first.. in `order` (the shuffled user ids) and note the draw."""
    if order:
        await conn.execute(
            update(QueueEntry)
            .where(QueueEntry.event_id == event_id, QueueEntry.user_id == bindparam("uid"))
            .values(place=bindparam("new_place")),
            [{"uid": user_id, "new_place": first + index} for index, user_id in enumerate(order)],
        )
    await conn.execute(
        pg_insert(EventQueue).values(event_id=event_id, drawn_at=now)
        .on_conflict_do_update(index_elements=["event_id"], set_={"drawn_at": now})
    )


async def admit(conn: AsyncConnection, event_id: int, user_ids: list[int], now: datetime,
                expires_at: datetime) -> int:
    """Admit these waiting accounts; returns how many were (fewer: another writer got there first)."""
    result = await conn.execute(
        update(QueueEntry)
        .where(QueueEntry.event_id == event_id, QueueEntry.user_id.in_(user_ids),
               QueueEntry.status == QueueStatus.WAITING)
        .values(status=QueueStatus.ADMITTED, admitted_at=now, pass_expires_at=expires_at)
    )
    return result.rowcount


async def expire(conn: AsyncConnection, event_id: int, user_ids: list[int], now: datetime) -> int:
    """End these accounts' turns, if their passes have run out by the database's own expiry time (not a
    writer's memory of it); returns how many turns ended."""
    result = await conn.execute(
        update(QueueEntry)
        .where(QueueEntry.event_id == event_id, QueueEntry.user_id.in_(user_ids),
               QueueEntry.status == QueueStatus.ADMITTED, QueueEntry.pass_expires_at <= now)
        .values(status=QueueStatus.EXPIRED)
    )
    return result.rowcount


async def active_holds_of(conn: AsyncConnection, event_id: int, user_ids: list[int]) -> list[tuple[int, int]]:
    """(category id, user id) of the active holds these accounts have in the event."""
    rows = (await conn.execute(
        select(Hold.category_id, Hold.user_id)
        .where(Hold.event_id == event_id, Hold.user_id.in_(user_ids), Hold.status == HoldStatus.ACTIVE)
    )).all()
    return [(r.category_id, r.user_id) for r in rows]


async def holds_after_turns(conn: AsyncConnection, event_id: int) -> list[tuple[int, int]]:
    """(category id, user id) of the active holds in the event whose holders' turns have expired: their
    release at the end of the turn failed, or the hold was written just after the turn ended."""
    rows = (await conn.execute(
        select(Hold.category_id, Hold.user_id)
        .join(QueueEntry, (QueueEntry.event_id == Hold.event_id) & (QueueEntry.user_id == Hold.user_id))
        .where(Hold.event_id == event_id, Hold.status == HoldStatus.ACTIVE, QueueEntry.status == QueueStatus.EXPIRED)
    )).all()
    return [(r.category_id, r.user_id) for r in rows]


async def ordered_during_turn(conn: AsyncConnection, event_id: int, user_ids: list[int]) -> set[int]:
    """Which of these admitted accounts have an order in the event, made since they were admitted and not
    cancelled since."""
    if not user_ids:
        return set()
    users = bindparam("users", user_ids, type_=ARRAY(Integer))
    rows = await conn.execute(
        select(Order.user_id).distinct()
        .join(QueueEntry, (QueueEntry.event_id == Order.event_id) & (QueueEntry.user_id == Order.user_id))
        .where(Order.event_id == event_id, Order.user_id == any_(users), Order.created_at >= QueueEntry.admitted_at,
               Order.status != OrderStatus.CANCELLED)
    )
    return set(rows.scalars().all())


async def queued_events(engine: AsyncEngine, now: datetime) -> list[int]:
    """Events whose queue is on and that have not taken place: the queues to run at start-up."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Event.id).where(Event.queue_enabled.is_(True), Event.is_active.is_(True), Event.event_date > now)
        )
        return [r[0] for r in rows.all()]
