"""Orders service: reading orders and holds, and the sales figures of /api/stats.

Seat changes (buying, cancelling, holds) do not come here: the ingress replica sends them straight to
the category actors (`deployments.seats`), one hop fewer on the hot path.
"""
from __future__ import annotations

from ray import serve

from deployments.read_cache import ReadCache
from deployments.views import hold_row_view, order_row_view
from domain import orders as rules
from domain.auth import Principal
from domain.errors import NotFound
from domain.orders import WHOLE, Page
from storage import orders_store
from storage.database import make_engine

# How long a replica reuses the hold history of /api/stats (`closed_hold_counts`, a scan of every hold ever
# made): a public route must not let each caller scan a table that grows by thousands of rows a second in a
# rush. Everything else in the answer (active holds, seats per category) is read on every call.
HOLD_HISTORY_SECONDS = 10.0


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class OrdersService:
    def __init__(self, db_url: str) -> None:
        self.engine = make_engine(db_url, pool_size=4)
        # One key (None): the counts of every hold that ended; callers at once share one scan.
        self.hold_history = ReadCache(lambda _: orders_store.closed_hold_counts(self.engine), HOLD_HISTORY_SECONDS)

    async def get(self, principal: Principal, order_id: int) -> dict:
        row = await orders_store.get_order(self.engine, order_id)
        if row is None:
            raise NotFound(f"Order with ID {order_id} not found")
        rules.check_may_view(principal, row.user_id, row.event_owner)
        return order_row_view(row)

    async def mine(self, principal: Principal, page: Page = WHOLE) -> list[dict]:
        rows = await orders_store.list_orders(self.engine, page, user_id=principal.user_id)
        return [order_row_view(r) for r in rows]

    async def of_event(self, principal: Principal, event_id: int, page: Page = WHOLE) -> list[dict]:
        owner = await orders_store.event_owner(self.engine, event_id)
        if owner is None:
            raise NotFound(f"Event with ID {event_id} not found")
        rules.check_may_list_event(principal, owner)
        return [order_row_view(r) for r in await orders_store.list_orders(self.engine, page, event_id=event_id)]

    async def of_my_events(self, principal: Principal, page: Page = WHOLE) -> list[dict]:
        rules.check_organizer(principal)
        rows = await orders_store.list_orders(self.engine, page, organizer_id=principal.user_id)
        return [order_row_view(r) for r in rows]

    async def my_holds(self, principal: Principal) -> list[dict]:
        return [hold_row_view(r) for r in await orders_store.active_holds(self.engine, principal.user_id)]

    async def stats(self) -> dict:
        return await orders_store.stats(self.engine, await self.hold_history.get(None))
