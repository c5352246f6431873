"""Every seat change of the HTTP API, run in the ingress replica that received the request.

Holds, releases, orders (plain and with a hold) and cancellations go from here straight to their
category actor, coalesced per category by `CategoryActors`: one hop, no Serve call in between
(docs/architecture.md says why). Reads of orders and holds stay in the OrdersService deployment.
Answers are JSON for the edge; refusals become `ApiError`s through `deployments.refusals`.
"""
from __future__ import annotations

import uuid

from actors.client import CategoryActors
from deployments.refusals import refusal_error
from deployments.views import hold_view, new_order_view, order_row_view
from domain import orders as rules
from domain.auth import Principal
from domain.errors import ApiError, BadRequest, NotFound
from domain.inventory import (
    CancelRequest,
    ConfirmRequest,
    HoldRequest,
    Outcome,
    PurchaseRequest,
    Refusal,
    ReleaseRequest,
)
from domain.vocabulary import OrderStatus
from storage import orders_store
from storage.database import make_engine
from ticketing.settings import Tunables


class SeatDesk:
    def __init__(self, db_url: str, tunables: Tunables | None = None) -> None:
        self.engine = make_engine(db_url, pool_size=4)
        self.categories = CategoryActors(db_url, tunables)

    async def hold(self, principal: Principal, event_id: int, category_id: int, quantity: int) -> dict:
        outcome = await self.categories.call(event_id, category_id, HoldRequest(principal.user_id, quantity))
        if not outcome.ok:
            raise refusal_error(outcome, event_id, quantity)
        return {**hold_view(outcome.hold, event_id, category_id), "availableTickets": outcome.available}

    async def release_hold(self, principal: Principal, lock_id: str) -> dict:
        try:
            hold_id = uuid.UUID(lock_id)
        except ValueError:
            raise NotFound("No tickets found to unlock") from None
        row = await orders_store.get_hold(self.engine, hold_id)
        if row is None or row.user_id != principal.user_id:
            raise NotFound("No tickets found to unlock")
        outcome = await self.categories.call(row.event_id, row.category_id,
                                             ReleaseRequest(principal.user_id, hold_id))
        return _released(outcome, row.event_id)

    async def release_in_category(self, principal: Principal, category_id: int, event_id: int | None) -> dict:
        owner_event = await orders_store.category_event(self.engine, category_id)
        if owner_event is None or (event_id is not None and event_id != owner_event):
            raise NotFound(f"Ticket category with ID {category_id} not found")
        outcome = await self.categories.call(owner_event, category_id, ReleaseRequest(principal.user_id))
        return _released(outcome, owner_event)

    async def replay(self, principal: Principal, body: dict, idempotency_key: str | None) -> dict | None:
        """The order an earlier request with this Idempotency-Key made, answered again (422 if this request
        asks for something else); None when there is none. Callers ask before anything that could refuse a
        retry of an order that exists (a sold-out category, a closed hold, an expired queue pass)."""
        if not idempotency_key:
            return None
        earlier = await orders_store.find_by_idempotency_key(self.engine, principal.user_id, idempotency_key)
        return None if earlier is None else _replay(earlier, body)

    async def order(self, principal: Principal, body: dict, idempotency_key: str | None) -> dict:
        """POST /api/orders (no lockId) and /api/orders/with-lock (lockId). Callers ask `replay` first."""
        event_id, category_id = body["eventId"], body["categoryId"]
        lock_id = body.get("lockId")
        if lock_id:
            try:
                hold_id = uuid.UUID(str(lock_id))
            except ValueError:
                raise BadRequest("Ticket lock has expired or is invalid") from None
            request = ConfirmRequest(principal.user_id, hold_id, body["quantity"], body.get("notes"),
                                     idempotency_key)
        else:
            request = PurchaseRequest(principal.user_id, body["quantity"], body.get("notes"), idempotency_key)
        outcome = await self.categories.call(event_id, category_id, request)
        if outcome.ok:
            return new_order_view(outcome.order, event_id, category_id)
        # A concurrent request with the same key may have made the order meanwhile: this one was then refused
        # for what that one did (the hold it confirmed, the seats it took, the key it used). Answer with it.
        if (replayed := await self.replay(principal, body, idempotency_key)) is not None:
            return replayed
        if outcome.refusal is Refusal.CATEGORY_NOT_FOUND:
            if await orders_store.event_owner(self.engine, event_id) is None:
                raise NotFound(f"Event with ID {event_id} not found")
        raise refusal_error(outcome, event_id, body["quantity"])

    async def cancel(self, principal: Principal, order_id: int) -> dict:
        row = await self._order(order_id)
        rules.check_may_cancel(principal, row.user_id)
        if row.status != OrderStatus.CONFIRMED:
            raise BadRequest("Only confirmed orders can be cancelled")
        outcome = await self.categories.call(row.event_id, row.category_id, CancelRequest(principal.user_id, order_id))
        if not outcome.ok:
            raise refusal_error(outcome, row.event_id)
        return order_row_view(await self._order(order_id))

    async def _order(self, order_id: int):
        row = await orders_store.get_order(self.engine, order_id)
        if row is None:
            raise NotFound(f"Order with ID {order_id} not found")
        return row


def _released(outcome: Outcome, event_id: int) -> dict:
    if not outcome.ok:
        raise refusal_error(outcome, event_id)
    return {"success": True, "message": "Tickets unlocked successfully", "availableTickets": outcome.available}


def _replay(earlier, body: dict) -> dict:
    """The order an Idempotency-Key already made, if the retry asks for the same thing."""
    if (earlier.event_id, earlier.category_id, earlier.quantity) != (
        body["eventId"], body["categoryId"], body["quantity"]
    ):
        raise ApiError("Idempotency-Key was already used for a different order", 422)
    return order_row_view(earlier)
