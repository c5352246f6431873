"""The words of the house, in one place: roles, the statuses of holds and orders, what counts as sold,
the id range, and a category's seat figures with the one formula for the seats still available.

Storage maps these enums to the PostgreSQL enums of the same values (`storage/models.py`; the values are
the database's, so they never change without a migration); actors, deployments, bench and tests import
them from here.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

# PostgreSQL `integer` (users, events, categories): an id outside 1..MAX_ID names no row, so the edges
# refuse it (400/401/404) instead of letting it reach the database as an out-of-range parameter (500).
MAX_ID = 2**31 - 1
MAX_QUANTITY = 1000  # seats in one request, on every route and message (a category's own maximum may be lower)
MAX_PAGE = 1000  # most rows one page of a list may ask for (`?limit=`); without a limit a list is whole


class Role(str, enum.Enum):
    ASSISTANT = "assistant"
    ORGANIZER = "organizer"


ROLES: tuple[str, ...] = tuple(r.value for r in Role)


class HoldStatus(str, enum.Enum):
    """A hold is `active` until it is closed, once, as one of the three others."""

    ACTIVE = "active"
    CONFIRMED = "confirmed"  # it became an order
    RELEASED = "released"
    EXPIRED = "expired"


class OrderStatus(str, enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class QueueStatus(str, enum.Enum):
    """A place in an event's waiting room: `waiting`, then `admitted` once (a shopping pass), then
    `expired` when the shopping time is over."""

    WAITING = "waiting"
    ADMITTED = "admitted"
    EXPIRED = "expired"


# The orders whose seats are sold: what `ticket_categories.sold_seats` counts (migration 0001's trigger),
# what a category actor loads, and what the invariant checks compare the counter with.
SOLD_STATUSES: tuple[OrderStatus, ...] = (OrderStatus.CONFIRMED, OrderStatus.COMPLETED)
# The same, as an SQL list for hand-written queries: "('confirmed', 'completed')".
SOLD_STATUSES_SQL = "(" + ", ".join(f"'{s.value}'" for s in SOLD_STATUSES) + ")"


def available_seats(total: int, sold: int, held: int) -> int:
    """The one formula: seats neither sold nor held, never below 0."""
    return max(0, total - sold - held)


@dataclass(frozen=True)
class CategoryFigures:
    """A category's seats: as a category actor counts them, or as the database counters say."""

    total: int
    sold: int
    held: int

    @property
    def available(self) -> int:
        return available_seats(self.total, self.sold, self.held)
