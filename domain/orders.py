"""Who may see and cancel orders, and the pages a list of them comes in."""
from __future__ import annotations

from typing import NamedTuple

from domain.auth import Principal
from domain.errors import Forbidden


class Page(NamedTuple):
    """A slice of a list, newest first: at most `limit` rows (None: all of them) after skipping `offset`."""

    limit: int | None = None
    offset: int = 0


WHOLE = Page()


def check_may_view(principal: Principal, order_user_id: int, event_owner_id: int) -> None:
    """A buyer sees their own orders; an organizer sees the orders of their own events."""
    if principal.user_id not in (order_user_id, event_owner_id):
        raise Forbidden("You can only view your own orders")


def check_may_cancel(principal: Principal, order_user_id: int) -> None:
    if principal.user_id != order_user_id:
        raise Forbidden("You can only cancel your own orders")


def check_may_list_event(principal: Principal, event_owner_id: int) -> None:
    if principal.user_id != event_owner_id:
        raise Forbidden("Only the event's organizer can list its orders")


def check_organizer(principal: Principal) -> None:
    if not principal.is_organizer:
        raise Forbidden("Only organizers can list the orders of their events")
