"""The waiting room at the edge, run in the ingress replica: joining an event's queue, reading one's turn,
the operators' figures, and the pass check in front of every hold and order.

An event's sale settings are read from PostgreSQL at most once a second per replica (`SaleCache`), so
an organizer's change applies within a second and a rush of holds costs no extra query per request.
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path

from actors.queues import EventQueues
from deployments.views import queue_figures_view, queue_state_view
from domain.auth import Principal
from domain.errors import BadRequest, NotFound
from domain.passes import check_may_shop, issue_pass
from domain.queue import Place
from domain.vocabulary import QueueStatus
from storage.database import make_engine
from storage.queue_store import EventSale, queued_events, read_event_sale
from ticketing import settings

SALE_CACHE_SECONDS = 1.0


class SaleCache:
    def __init__(self, engine, ttl: float = SALE_CACHE_SECONDS) -> None:
        self.engine = engine
        self.ttl = ttl
        self.entries: dict[int, tuple[float, EventSale | None]] = {}

    async def get(self, event_id: int) -> EventSale | None:
        now = time.monotonic()
        cached = self.entries.get(event_id)
        if cached is None or cached[0] <= now:
            if len(self.entries) > 10_000:
                self.entries.clear()
            cached = (now + self.ttl, await read_event_sale(self.engine, event_id))
            self.entries[event_id] = cached
        return cached[1]

    def forget(self, event_id: int) -> None:
        self.entries.pop(event_id, None)


class QueueDesk:
    def __init__(self, db_url: str, data_dir: str) -> None:
        self.engine = make_engine(db_url, pool_size=2)
        self.queues = EventQueues(db_url)
        self.sales = SaleCache(self.engine)
        self.secret = settings.jwt_secret(Path(data_dir))

    async def check_may_shop(self, principal: Principal, event_id: int, queue_pass: str | None) -> None:
        """Before a hold or an order: 403 while the event's queue is on and the caller has no valid pass
        (or before its sale starts). An unknown event passes: the category actor answers 404."""
        sale = await self.sales.get(event_id)
        if sale is not None and sale.active:
            check_may_shop(sale.settings, event_id, principal.user_id, queue_pass, self.secret, _now())

    async def _open_sale(self, event_id: int) -> EventSale:
        sale = await read_event_sale(self.engine, event_id)
        if sale is None or not sale.active:
            raise NotFound(f"Event with ID {event_id} not found")
        if sale.event_date <= _now():
            raise BadRequest(f"Event {event_id} has already taken place")
        if not sale.settings.queue_enabled:
            raise BadRequest(f"Event {event_id} has no queue: buy directly")
        return sale

    async def join(self, principal: Principal, event_id: int) -> dict:
        await self._open_sale(event_id)
        entry, figures = await self.queues.join(event_id, principal.user_id)
        if entry is None:  # closed between the check and the join (deleted, queue switched off)
            raise BadRequest(f"Event {event_id} has no queue: buy directly")
        return self._state(entry, figures, event_id)

    async def state(self, principal: Principal, event_id: int) -> dict:
        await self._open_sale(event_id)
        entry, figures = await self.queues.state(event_id, principal.user_id)
        return self._state(entry, figures, event_id)

    async def figures(self, event_id: int) -> dict:
        await self._open_sale(event_id)
        return queue_figures_view(await self.queues.figures(event_id))

    async def stats(self) -> list[dict]:
        """Every running queue's figures, for `GET /api/stats`."""
        events = await queued_events(self.engine, _now())
        figures = await asyncio.gather(*(self.queues.figures(e) for e in events), return_exceptions=True)
        return [queue_figures_view(f) for f in figures if not isinstance(f, BaseException)]

    def _state(self, entry: Place | None, figures, event_id: int) -> dict:
        now = _now()
        queue_pass = None
        if entry is not None and entry.status is QueueStatus.ADMITTED and entry.pass_expires_at > now:
            queue_pass = issue_pass(entry.user_id, event_id, entry.pass_expires_at, self.secret)
        return queue_state_view(entry, figures, now, queue_pass)


def _now() -> datetime:
    return datetime.now(timezone.utc)
