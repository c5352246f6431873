"""Orders service: buying (with or without a hold), reading and cancelling orders."""
from __future__ import annotations

import uuid

from ray import serve

from actors.client import CategoryActors
from domain import orders as rules
from domain.auth import Principal
from domain.errors import ApiError, BadRequest, NotFound
from domain.inventory import CancelRequest, ConfirmRequest, PurchaseRequest, ReleaseRequest
from domain.views import iso, order_view
from storage import orders_store
from storage.database import make_engine
from ticketing.settings import Tunables


def row_view(row) -> dict:
    return order_view(
        id=row.id, user_id=row.user_id, event_id=row.event_id, category_id=row.category_id,
        quantity=row.quantity, unit_price=row.unit_price, total_price=row.total_price,
        status=row.status.value, event_name=row.event_name, category_name=row.category_name,
        notes=row.notes, created_at=row.created_at, updated_at=row.updated_at, hold_id=row.hold_id,
    )


def hold_row_view(row) -> dict:
    return {
        "lockId": str(row.id), "eventId": row.event_id, "categoryId": row.category_id,
        "userId": row.user_id, "quantity": row.quantity, "status": row.status.value,
        "createdAt": iso(row.created_at), "expiresAt": iso(row.expires_at),
    }


def granted(result: dict) -> dict:
    """An actor's answer, or the ApiError it stands for."""
    if not result["ok"]:
        raise ApiError(result["message"], result["status"])
    return result


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class OrdersService:
    def __init__(self, db_url: str) -> None:
        self.engine = make_engine(db_url, pool_size=4)
        self.categories = CategoryActors(db_url, vars(Tunables.from_env()))

    def reconfigure(self, config: dict) -> None:
        self.categories.tunables.update(Tunables.from_env().merged(config).__dict__)

    async def create(self, principal: Principal, body: dict, idempotency_key: str | None) -> dict:
        if idempotency_key:
            earlier = await orders_store.find_by_idempotency_key(self.engine, principal.user_id, idempotency_key)
            if earlier is not None:
                return self._replay(earlier, body)
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
        result = await self.categories.call(body["eventId"], body["categoryId"], request)
        if not result["ok"] and result["status"] == 404 and result["message"] == "Ticket category not found":
            if await orders_store.event_owner(self.engine, body["eventId"]) is None:
                raise NotFound(f"Event with ID {body['eventId']} not found")
        if not result["ok"] and result["status"] == 409 and idempotency_key:
            earlier = await orders_store.find_by_idempotency_key(self.engine, principal.user_id, idempotency_key)
            if earlier is not None:  # a concurrent retry won the race: answer with its order
                return self._replay(earlier, body)
        return granted(result)["order"]

    def _replay(self, earlier, body: dict) -> dict:
        if (earlier.event_id, earlier.category_id, earlier.quantity) != (
            body["eventId"], body["categoryId"], body["quantity"]
        ):
            raise ApiError("Idempotency-Key was already used for a different order", 422)
        return row_view(earlier)

    async def get(self, principal: Principal, order_id: int) -> dict:
        row = await self._order(order_id)
        rules.check_may_view(principal, row.user_id, row.event_owner)
        return row_view(row)

    async def _order(self, order_id: int):
        row = await orders_store.get_order(self.engine, order_id)
        if row is None:
            raise NotFound(f"Order with ID {order_id} not found")
        return row

    async def cancel(self, principal: Principal, order_id: int) -> dict:
        row = await self._order(order_id)
        rules.check_may_cancel(principal, row.user_id)
        if row.status.value != "confirmed":
            raise BadRequest("Only confirmed orders can be cancelled")
        granted(await self.categories.call(row.event_id, row.category_id,
                                           CancelRequest(principal.user_id, order_id)))
        return row_view(await self._order(order_id))

    async def mine(self, principal: Principal) -> list[dict]:
        return [row_view(r) for r in await orders_store.list_orders(self.engine, user_id=principal.user_id)]

    async def of_event(self, principal: Principal, event_id: int) -> list[dict]:
        owner = await orders_store.event_owner(self.engine, event_id)
        if owner is None:
            raise NotFound(f"Event with ID {event_id} not found")
        rules.check_may_list_event(principal, owner)
        return [row_view(r) for r in await orders_store.list_orders(self.engine, event_id=event_id)]

    async def of_my_events(self, principal: Principal) -> list[dict]:
        rules.check_organizer(principal)
        rows = await orders_store.list_orders(self.engine, organizer_id=principal.user_id)
        return [row_view(r) for r in rows]

    async def my_holds(self, principal: Principal) -> list[dict]:
        return [hold_row_view(r) for r in await orders_store.active_holds(self.engine, principal.user_id)]

    async def release_hold(self, principal: Principal, lock_id: str) -> dict:
        try:
            hold_id = uuid.UUID(lock_id)
        except ValueError:
            raise NotFound("No tickets found to unlock") from None
        row = await orders_store.get_hold(self.engine, hold_id)
        if row is None or row.user_id != principal.user_id:
            raise NotFound("No tickets found to unlock")
        result = granted(await self.categories.call(row.event_id, row.category_id,
                                                    ReleaseRequest(principal.user_id, hold_id)))
        return {"success": True, "message": result["message"], "availableTickets": result["availableTickets"]}

    async def release_in_category(self, principal: Principal, category_id: int, event_id: int | None) -> dict:
        owner_event = await orders_store.category_event(self.engine, category_id)
        if owner_event is None or (event_id is not None and event_id != owner_event):
            raise NotFound(f"Ticket category with ID {category_id} not found")
        result = granted(await self.categories.call(owner_event, category_id,
                                                    ReleaseRequest(principal.user_id)))
        return {"success": True, "message": result["message"], "availableTickets": result["availableTickets"]}

    async def stats(self) -> dict:
        return await orders_store.stats(self.engine)
