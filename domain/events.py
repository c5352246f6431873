"""Who may do what with an event."""
from __future__ import annotations

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
