"""JSON shapes of the seed's API (camelCase field names), built from plain values.

Money is an exact decimal serialised as a string with two places ("199.99") everywhere; order ids are
strings (bigint), as in the seed; times are ISO 8601 in UTC.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from domain.inventory import ActiveHold, NewOrder


def money(value: Decimal) -> str:
    return f"{Decimal(value):.2f}"


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def hold_view(hold: ActiveHold, event_id: int, category_id: int, status: str = "active") -> dict:
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
        status="confirmed",
        event_name=order.event_name,
        category_name=order.category_name,
        notes=order.notes,
        created_at=order.created_at,
        updated_at=order.created_at,
        hold_id=order.hold_id,
    )
