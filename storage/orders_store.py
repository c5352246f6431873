"""Orders and holds, read side (the category actors do every write)."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.orders import WHOLE, Page
from domain.vocabulary import CategoryFigures, HoldStatus
from storage.models import Event, Hold, Order, TicketCategory


async def get_order(engine: AsyncEngine, order_id: int):
    """The order and its event's organizer id, or None."""
    query = (
        select(Order.__table__, Event.created_by.label("event_owner"))
        .join(Event, Event.id == Order.event_id)
        .where(Order.id == order_id)
    )
    async with engine.connect() as conn:
        return (await conn.execute(query)).first()


async def find_by_idempotency_key(engine: AsyncEngine, user_id: int, key: str):
    query = select(Order.__table__).where(Order.user_id == user_id, Order.idempotency_key == key)
    async with engine.connect() as conn:
        return (await conn.execute(query)).first()


async def list_orders(engine: AsyncEngine, page: Page = WHOLE, *, user_id: int | None = None,
                      event_id: int | None = None, organizer_id: int | None = None) -> list:
    """Newest first; `page` takes a slice of that order (id breaks ties, so pages never overlap)."""
    query = select(Order.__table__).order_by(Order.created_at.desc(), Order.id.desc()).offset(page.offset or None)
    if page.limit is not None:
        query = query.limit(page.limit)
    if user_id is not None:
        query = query.where(Order.user_id == user_id)
    if event_id is not None:
        query = query.where(Order.event_id == event_id)
    if organizer_id is not None:
        query = query.join(Event, Event.id == Order.event_id).where(Event.created_by == organizer_id)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def event_owner(engine: AsyncEngine, event_id: int) -> int | None:
    async with engine.connect() as conn:
        return (await conn.execute(select(Event.created_by).where(Event.id == event_id))).scalar()


async def category_event(engine: AsyncEngine, category_id: int) -> int | None:
    query = select(TicketCategory.event_id).where(TicketCategory.id == category_id)
    async with engine.connect() as conn:
        return (await conn.execute(query)).scalar()


async def get_hold(engine: AsyncEngine, hold_id):
    async with engine.connect() as conn:
        return (await conn.execute(select(Hold.__table__).where(Hold.id == hold_id))).first()


async def active_holds(engine: AsyncEngine, user_id: int) -> list:
    query = (
        select(Hold.__table__)
        .where(Hold.user_id == user_id, Hold.status == HoldStatus.ACTIVE,
               Hold.expires_at > datetime.now(timezone.utc))
        .order_by(Hold.created_at)
    )
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def closed_hold_counts(engine: AsyncEngine) -> dict[HoldStatus, int]:
    """How many holds ended in each way (confirmed, released, expired): the hold history, a scan of the
    whole table (callers keep it a few seconds, `deployments.orders`)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Hold.status, func.count()).where(Hold.status != HoldStatus.ACTIVE).group_by(Hold.status))
        return dict(rows.all())


async def stats(engine: AsyncEngine, closed: dict[HoldStatus, int]) -> dict:
    """The seed's /stats lock figures, plus seats per category of active events. `closed` is
    `closed_hold_counts`; the active holds are counted now (through the index of active holds)."""
    now = datetime.now(timezone.utc)
    async with engine.connect() as conn:
        active = (await conn.execute(select(func.count()).where(Hold.status == HoldStatus.ACTIVE))).scalar()
        live = (
            await conn.execute(
                select(func.count(), func.count(func.distinct(Hold.user_id)),
                       func.count(func.distinct(Hold.category_id)))
                .where(Hold.status == HoldStatus.ACTIVE, Hold.expires_at > now)
            )
        ).one()
        # Plain columns: on a Core connection an ORM entity would come back flattened, not as an object.
        categories = (
            await conn.execute(
                select(TicketCategory.event_id, TicketCategory.id, TicketCategory.name,
                       TicketCategory.total_seats, TicketCategory.held_seats, TicketCategory.sold_seats,
                       Event.name.label("event_name"))
                .join(Event, Event.id == TicketCategory.event_id)
                .where(Event.is_active)
                .order_by(TicketCategory.event_id, TicketCategory.id)
            )
        ).all()
    by_status = {**closed, HoldStatus.ACTIVE: active}
    return {
        "ticketLocks": {
            "totalLocks": sum(by_status.values()),
            "activeLocks": live[0],
            "usersWithLocks": live[1],
            "categoriesWithLocks": live[2],
            "locksByStatus": {s.value: by_status.get(s, 0) for s in HoldStatus},
        },
        "categories": [
            {
                "eventId": c.event_id,
                "eventName": c.event_name,
                "categoryId": c.id,
                "categoryName": c.name,
                "totalSeats": c.total_seats,
                "heldSeats": c.held_seats,
                "soldSeats": c.sold_seats,
                "availableSeats": CategoryFigures(c.total_seats, c.sold_seats, c.held_seats).available,
            }
            for c in categories
        ],
    }
