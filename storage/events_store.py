"""Events and ticket categories table access."""
from __future__ import annotations

from datetime import datetime

from psycopg.errors import CheckViolation, ForeignKeyViolation
from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import selectinload

from domain.realtime import db_figures
from storage.database import make_sessionmaker
from storage.models import Event, TicketCategory


class UnknownCreator(Exception):
    """The creator's user row does not exist (a valid token outlived its user)."""


class QueueWithoutWayIn(Exception):
    """The write would leave the event's queue on with neither a rate nor a cap (`queue_has_a_way_in`):
    another edit changed the event since it was read."""


async def create_event(engine: AsyncEngine, fields: dict, categories: list[dict], created_by: int) -> Event:
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            event = Event(**fields, created_by=created_by)
            event.ticket_categories = [TicketCategory(**c) for c in categories]
            session.add(event)
    except IntegrityError as exc:
        if isinstance(exc.orig, ForeignKeyViolation):
            raise UnknownCreator(created_by) from exc
        raise
    return await get_event(engine, event.id)


async def get_event(engine: AsyncEngine, event_id: int) -> Event | None:
    async with make_sessionmaker(engine)() as session:
        return await session.get(Event, event_id, options=[selectinload(Event.ticket_categories)])


async def list_events(
    engine: AsyncEngine, *, category: str | None = None, after: datetime | None = None, by_date: bool = False
) -> list[Event]:
    query = select(Event).where(Event.is_active).options(selectinload(Event.ticket_categories))
    if category is not None:
        query = query.where(Event.category == category)
    if after is not None:
        query = query.where(Event.event_date > after)
    query = query.order_by(Event.event_date, Event.id) if by_date else query.order_by(Event.id)
    async with make_sessionmaker(engine)() as session:
        return list((await session.scalars(query)).all())


async def update_event(engine: AsyncEngine, event_id: int, fields: dict) -> None:
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(Event).where(Event.id == event_id).values(**fields, updated_at=datetime.now().astimezone()))
    except IntegrityError as exc:
        if isinstance(exc.orig, CheckViolation) and exc.orig.diag.constraint_name == "queue_has_a_way_in":
            raise QueueWithoutWayIn(event_id) from exc
        raise


async def category_exists(engine: AsyncEngine, event_id: int, category_id: int) -> bool:
    query = select(
        exists().where(TicketCategory.id == category_id, TicketCategory.event_id == event_id)
    )
    async with engine.connect() as conn:
        return bool((await conn.execute(query)).scalar())


async def stored_figures(engine: AsyncEngine, event_id: int, category_id: int) -> dict | None:
    """A category's figures as its actor publishes them (`domain.realtime.db_figures`), from its counters,
    which only its actor writes; None if there is no such category."""
    query = (
        select(TicketCategory.total_seats, TicketCategory.sold_seats, TicketCategory.held_seats,
               (Event.is_active & TicketCategory.is_active).label("on_sale"))
        .join(Event, Event.id == TicketCategory.event_id)
        .where(TicketCategory.id == category_id, TicketCategory.event_id == event_id)
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else db_figures(event_id, category_id, row.total_seats, row.sold_seats,
                                               row.held_seats, row.on_sale)


async def on_sale_categories(engine: AsyncEngine, now: datetime, event_id: int | None = None) -> list[tuple[int, int]]:
    """(event id, category id) of every category (of `event_id`, if given) buyers can hold or buy now or
    once its sale starts: active, of an active event that has not taken place. The one statement of
    that rule."""
    query = (
        select(TicketCategory.event_id, TicketCategory.id)
        .join(Event, Event.id == TicketCategory.event_id)
        .where(Event.is_active.is_(True), TicketCategory.is_active.is_(True), Event.event_date > now)
        .order_by(Event.event_date, TicketCategory.id)
    )
    if event_id is not None:
        query = query.where(Event.id == event_id)
    async with engine.connect() as conn:
        return [(row[0], row[1]) for row in (await conn.execute(query)).all()]
