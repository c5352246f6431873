"""Events service: organizers publish events with ticket categories; anyone browses them."""
from __future__ import annotations

from datetime import datetime, timezone

from ray import serve

from actors.client import CategoryActors
from actors.queues import EventQueues
from deployments.views import category_view, event_view
from domain import events as rules
from domain.auth import Principal
from domain.errors import BadRequest, NotFound
from domain.sale import QUEUE_NEEDS_A_WAY_IN, SaleSettings, check_sale_settings
from storage import events_store
from storage.database import make_engine
from storage.migrate import health
from storage.models import Event

# JSON field → column, for create and update bodies
EVENT_FIELDS = {
    "eventName": "name",
    "eventCategory": "category",
    "description": "description",
    "eventDate": "event_date",
    "location": "location",
    "isActive": "is_active",
    "saleStartsAt": "sale_starts_at",
    "queueEnabled": "queue_enabled",
    "queuePaused": "queue_paused",
    "admissionPerMinute": "admission_per_minute",
    "maxShoppers": "max_shoppers",
    "shoppingMinutes": "shopping_minutes",
    "ticketLimit": "ticket_limit",
}
SALE_COLUMNS = ("sale_starts_at", "queue_enabled", "queue_paused", "admission_per_minute", "max_shoppers",
                "shopping_minutes", "ticket_limit")


def sale_settings(columns: dict) -> SaleSettings:
    return SaleSettings(**{c: columns[c] for c in SALE_COLUMNS if c in columns})


def current_sale_columns(event: Event) -> dict:
    return {c: getattr(event, c) for c in SALE_COLUMNS}


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
class EventsService:
    def __init__(self, db_url: str) -> None:
        self.engine = make_engine(db_url, pool_size=3)
        self.categories = CategoryActors(db_url)  # the environment's tunables: it only refreshes actors
        self.queues = EventQueues(db_url)

    async def health(self) -> dict:
        return await health(self.engine)

    async def create(self, principal: Principal, body: dict) -> dict:
        rules.check_may_create(principal)
        fields = {column: body.get(key) for key, column in EVENT_FIELDS.items() if key != "isActive"}
        check_sale_settings(sale_settings(fields))
        categories = [
            {"name": c["categoryName"], "price": c["price"], "total_seats": c["totalSeats"],
             "description": c.get("description")}
            for c in body.get("ticketCategories") or []
        ]
        try:
            event = await events_store.create_event(self.engine, fields, categories, principal.user_id)
        except events_store.UnknownCreator:
            raise NotFound("User not found") from None
        return event_view(event)

    async def list(self, *, category: str | None = None, upcoming: bool = False) -> list[dict]:
        after = datetime.now(timezone.utc) if upcoming else None
        events = await events_store.list_events(self.engine, category=category, after=after, by_date=upcoming)
        return [event_view(e) for e in events]

    async def _visible(self, event_id: int, viewer: Principal | None) -> Event:
        event = await events_store.get_event(self.engine, event_id)
        rules.check_visible(event_id, event is not None, bool(event and event.is_active),
                            event.created_by if event else 0, viewer)
        return event

    async def get(self, event_id: int, viewer: Principal | None) -> dict:
        return event_view(await self._visible(event_id, viewer))

    async def tickets(self, event_id: int, viewer: Principal | None) -> list[dict]:
        event = await self._visible(event_id, viewer)
        return [category_view(c) for c in event.ticket_categories if c.is_active]

    async def update(self, principal: Principal, event_id: int, body: dict) -> dict:
        event = await self._visible(event_id, principal)
        rules.check_owner(principal, event.created_by, "edit")
        fields = {EVENT_FIELDS[k]: v for k, v in body.items() if k in EVENT_FIELDS}
        check_sale_settings(sale_settings({**current_sale_columns(event), **fields}))
        if fields:
            await self._write_settings(event_id, fields)
            await self.categories.refresh(event_id, [c.id for c in event.ticket_categories])
            await self._refresh_queue(event, fields)
        return await self.get(event_id, principal)

    async def control_queue(self, principal: Principal, event_id: int, body: dict) -> dict:
        """An operator's live controls (pause, resume, rate, cap): the event's owner only."""
        event = await self._visible(event_id, principal)
        rules.check_owner(principal, event.created_by, "edit")
        if not event.queue_enabled:
            raise BadRequest(f"Event {event_id} has no queue")
        fields = {EVENT_FIELDS[k]: v for k, v in body.items() if k in EVENT_FIELDS}
        check_sale_settings(sale_settings({**current_sale_columns(event), **fields}))
        if fields:
            await self._write_settings(event_id, fields)
            await self._refresh_queue(event, fields)
        return await self.get(event_id, principal)

    async def _write_settings(self, event_id: int, fields: dict) -> None:
        try:
            await events_store.update_event(self.engine, event_id, fields)
        except events_store.QueueWithoutWayIn:  # checked above, but another edit came in between
            raise BadRequest(QUEUE_NEEDS_A_WAY_IN) from None

    async def _refresh_queue(self, event: Event, fields: dict) -> None:
        """The queue actor applies new settings at once (and starts when a queue is switched on)."""
        queued_before = event.queue_enabled
        if queued_before or fields.get("queue_enabled") or self.queues.handle(event.id, create=False):
            await self.queues.refresh(event.id)

    async def delete(self, principal: Principal, event_id: int) -> bool:
        event = await self._visible(event_id, principal)
        rules.check_owner(principal, event.created_by, "delete")
        await events_store.update_event(self.engine, event_id, {"is_active": False})
        # Answer only once every running category actor has stopped selling.
        await self.categories.refresh(event_id, [c.id for c in event.ticket_categories])
        if self.queues.handle(event_id, create=False):
            await self.queues.refresh(event_id)
        return True
