"""The waiting room at the edge: joining an event's queue, reading one's turn, the operators' figures, and
the pass check in front of every hold and order. Plain edge code, not a Serve deployment: the ingress
replica (HTTP routes) and the realtime replicas (`join-queue`, `queue-status`, `lock-tickets` over a
socket, deployments/realtime.py) each hold one, so both answer with the same rules and messages.

An event's sale settings are read from PostgreSQL at most once a second per replica (`SaleCache`), so
an organizer's change applies within a second and a rush of holds costs no extra query per request.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

from actors.queues import EventQueues
from deployments.read_cache import ReadCache
from deployments.views import queue_figures_view, queue_state_view
from domain.auth import Principal
from domain.errors import BadRequest, NotFound
from domain.passes import HTTP_CARRIER, check_may_shop, issue_pass
from domain.queue import Place, QueueFigures
from domain.vocabulary import QueueStatus
from storage import catalog_notices
from storage.database import make_engine
from storage.queue_store import EventSale, queued_events, read_event_sale
from ticketing import settings

log = logging.getLogger(__name__)
SALE_CACHE_SECONDS = 1.0


class SaleCache(ReadCache[int, EventSale | None]):
    """Each event's sale settings (`read(event_id)`), read at most once per SALE_CACHE_SECONDS per replica
    unless `forget` says the organizer changed them."""

    def __init__(self, read: Callable[[int], Awaitable[EventSale | None]], ttl: float = SALE_CACHE_SECONDS) -> None:
        super().__init__(read, ttl)


class QueueDesk:
    def __init__(self, db_url: str, data_dir: str, engine=None) -> None:
        self.engine = engine if engine is not None else make_engine(db_url, pool_size=2)
        self.queues = EventQueues(db_url)
        self.sales = SaleCache(lambda event_id: read_event_sale(self.engine, event_id))
        self.secret = settings.jwt_secret(Path(data_dir))

    async def follow_catalog(self, db_url: str,
                             then: Callable[[int], Awaitable[None]] | None = None) -> None:
        """Forever: when an organizer's change is announced (storage.catalog_notices, from any replica),
        drop the event's cached sale settings at once, then run `then(event_id)` in a task of its own. The
        HTTP and realtime replicas both run it, so a pause or a new sale start reaches every pass check in
        milliseconds; a lost notice still ages out with the cache."""
        while True:
            try:
                async for event_id in catalog_notices.changed_events(db_url):
                    self.sales.forget(event_id)
                    if then is not None:
                        asyncio.get_running_loop().create_task(then(event_id))
            except Exception:
                log.warning("listening for catalog changes failed; listening again", exc_info=True)
            await asyncio.sleep(1.0)

    async def check_may_shop(self, principal: Principal | int, event_id: int, queue_pass: str | None,
                             carrier: str = HTTP_CARRIER) -> None:
        """Before a hold or an order: 403 while the event's queue is on and the caller has no valid pass
        (or before its sale starts). An unknown event passes: the category actor answers 404.
        `carrier` names where the client sends its pass (the refusal says so)."""
        user_id = principal if isinstance(principal, int) else principal.user_id
        sale = await self.sales.get(event_id)
        if sale is not None and sale.active:
            check_may_shop(sale.settings, event_id, user_id, queue_pass, self.secret, _now(), carrier)

    async def _open_sale(self, event_id: int, *, fresh: bool = False) -> EventSale:
        """The event's sale if its queue is open, else the ApiError that says why. From the replica's cache
        (a second old at most: a rush of joins costs no query each) unless `fresh`."""
        sale = await (read_event_sale(self.engine, event_id) if fresh else self.sales.get(event_id))
        if sale is None or not sale.active:
            raise NotFound(f"Event with ID {event_id} not found")
        if sale.event_date <= _now():
            raise BadRequest(f"Event {event_id} has already taken place")
        if not sale.settings.queue_enabled:
            raise BadRequest(f"Event {event_id} has no queue: buy directly")
        return sale

    async def join(self, principal: Principal, event_id: int) -> dict:
        entry, figures = await self.join_entry(principal.user_id, event_id)
        return self.view(entry, figures, event_id)

    async def state(self, principal: Principal, event_id: int) -> dict:
        entry, figures = await self.state_entry(principal.user_id, event_id)
        return self.view(entry, figures, event_id)

    async def join_entry(self, user_id: int, event_id: int) -> tuple[Place, QueueFigures]:
        """Join (again: the same place); ApiError 404/400 when the event has no open queue."""
        await self._open_sale(event_id)
        entry, figures = await self.queues.join(event_id, user_id)
        if entry is None:  # the queue says it is closed (deleted, over, switched off): say why, fresh
            self.sales.forget(event_id)
            await self._open_sale(event_id, fresh=True)
            raise BadRequest(f"Event {event_id} has no queue: buy directly")
        return entry, figures

    async def state_entry(self, user_id: int, event_id: int) -> tuple[Place | None, QueueFigures]:
        await self._open_sale(event_id)
        return await self.queues.state(event_id, user_id)

    async def figures(self, event_id: int) -> dict:
        await self._open_sale(event_id)
        return queue_figures_view(await self.queues.figures(event_id))

    async def stats(self) -> list[dict]:
        """Every running queue's figures, for `GET /api/stats`."""
        events = await queued_events(self.engine, _now())
        figures = await asyncio.gather(*(self.queues.figures(e) for e in events), return_exceptions=True)
        return [queue_figures_view(f) for f in figures if not isinstance(f, BaseException)]

    def pass_for(self, entry: Place | None, event_id: int, now: datetime | None = None) -> str | None:
        """The signed pass of an admitted entry whose shopping time is not over (else None)."""
        now = now or _now()
        if entry is not None and entry.status is QueueStatus.ADMITTED and entry.pass_expires_at > now:
            return issue_pass(entry.user_id, event_id, entry.pass_expires_at, self.secret)
        return None

    def view(self, entry: Place | None, figures: QueueFigures, event_id: int) -> dict:
        """The buyer's turn as JSON (HTTP answer and the socket's `queue-status` alike)."""
        now = _now()
        return queue_state_view(entry, figures, now, self.pass_for(entry, event_id, now))


def _now() -> datetime:
    return datetime.now(timezone.utc)
