"""Who may do what with an event."""
from __future__ import annotations

from datetime import datetime

from domain.auth import Principal
from domain.errors import Forbidden, NotFound


def check_may_create(principal: Principal) -> None:
    if not principal.is_organizer:
        raise Forbidden("Only organizers can create events")


def check_visible(event_id: int, found: bool, is_active: bool, created_by: int, viewer: Principal | None) -> None:
    """Inactive (deleted) events are 404 to everyone but their creator."""
    if not found or (not is_active and (viewer is None or viewer.user_id != created_by)):
        raise NotFound(f"Event with ID {event_id} not found")


def check_owner(principal: Principal, created_by: int, action: str) -> None:
    if principal.user_id != created_by:
        raise Forbidden(f"You can only {action} events that you created")


def on_sale_categories(event: dict, now: datetime) -> list[int]:
    """Ids of the categories buyers can hold or buy now, from an event's JSON view: active categories
    of an active event that has not taken place (storage.events_store.on_sale_categories asks the same
    of the database)."""
    date = datetime.fromisoformat(event["eventDate"].replace("Z", "+00:00"))
    if not event["isActive"] or date <= now:
        return []
    return [c["id"] for c in event["ticketCategories"] if c["isActive"]]
