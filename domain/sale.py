"""An event's sale settings and the rules about them: when buyers may shop, and whether they need a
pass from the event's waiting room (docs/waiting-room.md).

Every setting is optional. An event without any sells at once to everyone, as the replaced system did.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.errors import BadRequest, Forbidden

DEFAULT_SHOPPING_MINUTES = 10  # how long an admitted buyer may shop (Ticketmaster keeps a turn 10 minutes)


@dataclass(frozen=True)
class SaleSettings:
    sale_starts_at: datetime | None = None
    queue_enabled: bool = False
    queue_paused: bool = False  # admission stopped by an operator; joining still works
    admission_per_minute: int | None = None  # new buyers let in per minute
    max_shoppers: int | None = None  # buyers shopping at once
    shopping_minutes: int = DEFAULT_SHOPPING_MINUTES
    ticket_limit: int | None = None  # seats per account for the whole event, all categories together

    def started(self, now: datetime) -> bool:
        return self.sale_starts_at is None or now >= self.sale_starts_at


QUEUE_NEEDS_A_WAY_IN = "A queue needs admissionPerMinute, maxShoppers or both"


def check_sale_settings(settings: SaleSettings) -> None:
    """A queue needs a way to let people in: a rate, a cap on shoppers, or both (the database's
    `queue_has_a_way_in` holds it against concurrent edits too)."""
    if settings.queue_enabled and settings.admission_per_minute is None and settings.max_shoppers is None:
        raise BadRequest(QUEUE_NEEDS_A_WAY_IN)


def queue_route(event_id: int) -> str:
    return f"/api/events/{event_id}/queue"


def check_started(settings: SaleSettings, event_id: int, now: datetime) -> None:
    if not settings.started(now):
        raise Forbidden(f"The sale of event {event_id} has not started yet")
