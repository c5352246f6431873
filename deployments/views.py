"""JSON shapes of the seed's API (camelCase field names): the one place where holds, orders, events and
categories become JSON, for HTTP and WebSocket answers alike.

Money is an exact decimal serialised as a string with two places ("199.99") everywhere; order ids are
strings (bigint), as in the seed; times are ISO 8601 in UTC.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from deployments.refusals import status_and_message
from domain.inventory import ActiveHold, NewOrder, Outcome
from domain.queue import Place, QueueFigures, estimated_wait_seconds, people_ahead
from domain.realtime import refusal
from domain.sale import DEFAULT_SHOPPING_MINUTES
from domain.vocabulary import CategoryFigures, HoldStatus, OrderStatus, QueueStatus
from storage.models import Event, TicketCategory


def money(value: Decimal) -> str:
    return f"{Decimal(value):.2f}"


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def hold_view(hold: ActiveHold, event_id: int, category_id: int, status: str = HoldStatus.ACTIVE.value) -> dict:
    """A hold as the category actor decided it, or as read from the `holds` table (same attributes)."""
    return {
        "lockId": str(hold.id),
        "eventId": event_id,
        "categoryId": category_id,
        "userId": hold.user_id,
        "quantity": hold.quantity,
        "status": status,
        "createdAt": iso(hold.created_at),
        "expiresAt": iso(hold.expires_at),
    }


def hold_row_view(row) -> dict:
    """A row of `holds` (storage.orders_store.active_holds)."""
    return hold_view(row, row.event_id, row.category_id, row.status.value)


def order_view(
    *,
    id: int,
    user_id: int,
    event_id: int,
    category_id: int,
    quantity: int,
    unit_price: Decimal,
    total_price: Decimal,
    status: str,
    event_name: str,
    category_name: str,
    notes: str | None,
    created_at: datetime | None,
    updated_at: datetime | None,
    hold_id=None,
) -> dict:
    return {
        "id": str(id),
        "userId": user_id,
        "eventId": event_id,
        "categoryId": category_id,
        "quantity": quantity,
        "unitPrice": money(unit_price),
        "totalPrice": money(total_price),
        "status": status,
        "eventName": event_name,
        "categoryName": category_name,
        "notes": notes,
        "lockId": str(hold_id) if hold_id else None,
        "createdAt": iso(created_at),
        "updatedAt": iso(updated_at),
    }


def new_order_view(order: NewOrder, event_id: int, category_id: int) -> dict:
    assert order.id is not None
    return order_view(
        id=order.id,
        user_id=order.user_id,
        event_id=event_id,
        category_id=category_id,
        quantity=order.quantity,
        unit_price=order.unit_price,
        total_price=order.total_price,
        status=OrderStatus.CONFIRMED.value,
        event_name=order.event_name,
        category_name=order.category_name,
        notes=order.notes,
        created_at=order.created_at,
        updated_at=order.created_at,
        hold_id=order.hold_id,
    )


def order_row_view(row) -> dict:
    """A row of `orders` joined with its event's and category's names (storage.orders_store)."""
    return order_view(
        id=row.id, user_id=row.user_id, event_id=row.event_id, category_id=row.category_id,
        quantity=row.quantity, unit_price=row.unit_price, total_price=row.total_price,
        status=row.status.value, event_name=row.event_name, category_name=row.category_name,
        notes=row.notes, created_at=row.created_at, updated_at=row.updated_at, hold_id=row.hold_id,
    )


def category_view(c: TicketCategory) -> dict:
    seats = CategoryFigures(total=c.total_seats, sold=c.sold_seats, held=c.held_seats)
    return {
        "id": c.id,
        "categoryName": c.name,
        "price": money(c.price),
        "totalSeats": seats.total,
        "reservedSeats": seats.sold,
        "heldSeats": seats.held,
        "availableSeats": seats.available,
        "description": c.description,
        "isActive": c.is_active,
        "eventId": c.event_id,
    }


def event_view(e: Event) -> dict:
    return {
        "idEvent": e.id,
        "eventName": e.name,
        "eventCategory": e.category,
        "description": e.description,
        "eventDate": iso(e.event_date),
        "location": e.location,
        "isActive": e.is_active,
        "createdBy": e.created_by,
        "createdAt": iso(e.created_at),
        "updatedAt": iso(e.updated_at),
        "ticketCategories": [category_view(c) for c in e.ticket_categories],
        **sale_view(e),
    }


def sale_view(e: Event) -> dict:
    """An event's sale settings, only when the organizer set any: an event without them keeps exactly the
    replaced system's JSON."""
    settings = {
        "saleStartsAt": iso(e.sale_starts_at),
        "queueEnabled": e.queue_enabled,
        "queuePaused": e.queue_paused,
        "admissionPerMinute": e.admission_per_minute,
        "maxShoppers": e.max_shoppers,
        "shoppingMinutes": e.shopping_minutes,
        "ticketLimit": e.ticket_limit,
    }
    unset = {"saleStartsAt": None, "queueEnabled": False, "queuePaused": False, "admissionPerMinute": None,
             "maxShoppers": None, "shoppingMinutes": DEFAULT_SHOPPING_MINUTES, "ticketLimit": None}
    return {} if settings == unset else settings


# ---- WebSocket answers to a category's outcome ----


def lock_response(outcome: Outcome, event_id: int, category_id: int, quantity: object) -> dict:
    """A hold's outcome → `lock-tickets-response`."""
    if not outcome.ok:
        return _refusal(outcome, event_id, quantity)
    hold = outcome.hold
    return {
        "success": True,
        "lockId": str(hold.id),
        "eventId": event_id,
        "categoryId": category_id,
        "quantity": hold.quantity,
        "expiresAt": iso(hold.expires_at),
        "availableTickets": outcome.available,
    }


def unlock_response(outcome: Outcome, event_id: int) -> dict:
    if not outcome.ok:
        return _refusal(outcome, event_id)
    return {"success": True, "message": "Tickets unlocked successfully", "released": outcome.released,
            "availableTickets": outcome.available}


def _refusal(outcome: Outcome, event_id: int, quantity: object = None) -> dict:
    status, message = status_and_message(outcome, event_id, quantity)
    return refusal(message, status, outcome.available)


# ---- the waiting room ----


def queue_figures_view(figures: QueueFigures) -> dict:
    """An event's waiting room for operators (`GET /api/events/:id/queue/figures`, `/api/stats`)."""
    return {
        "eventId": figures.event_id,
        "queueEnabled": figures.enabled,
        "drawn": figures.drawn,
        "paused": figures.paused,
        "saleStartsAt": iso(figures.sale_starts_at),
        "queueLength": figures.length,
        "preQueue": figures.pre_queue,
        "waiting": figures.waiting,
        "admitted": figures.admitted,
        "shopping": figures.shopping,
        "admittedLastMinute": figures.admitted_last_minute,
        "admissionPerMinute": figures.admission_per_minute,
        "maxShoppers": figures.max_shoppers,
    }


def queue_state_view(entry: Place | None, figures: QueueFigures, now: datetime, queue_pass: str | None) -> dict:
    """A buyer's turn: status (not-joined / waiting / admitted / expired), place, people ahead, estimated
    wait and, while admitted, the pass that holds and orders of the event need."""
    base = {"eventId": figures.event_id, "queueLength": figures.length, "paused": figures.paused,
            "saleStartsAt": iso(figures.sale_starts_at)}
    if entry is None:
        return {**base, "status": "not-joined", "place": None, "peopleAhead": None, "estimatedWaitSeconds": None}
    status = entry.status
    if status is QueueStatus.ADMITTED and entry.pass_expires_at is not None and entry.pass_expires_at <= now:
        status = QueueStatus.EXPIRED  # the queue actor marks it within a second
    state = {**base, "status": status.value, "place": entry.place}
    if status is QueueStatus.WAITING:
        if entry.place is None:  # the pre-queue: places are drawn when the sale starts
            return {**state, "peopleAhead": None, "estimatedWaitSeconds": None}
        ahead = people_ahead(entry.place, figures.admitted)
        wait = estimated_wait_seconds(ahead, figures)
        return {**state, "peopleAhead": ahead, "estimatedWaitSeconds": None if wait is None else round(wait)}
    state.update(peopleAhead=0, estimatedWaitSeconds=0, admittedAt=iso(entry.admitted_at),
                 passExpiresAt=iso(entry.pass_expires_at))
    if status is QueueStatus.ADMITTED:
        state["queuePass"] = queue_pass
    return state
