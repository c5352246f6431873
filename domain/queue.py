"""The waiting room's rules, as plain functions and small classes (no Ray, no database).

- Before the sale starts, buyers join a pre-queue without a place. At the start the pre-queue is drawn:
  put in a uniformly random order (`draw`), places 1..n. Later arrivals get the next place.
- Places are admitted strictly in order, at a rate (buyers per minute) and/or up to a cap of buyers
  shopping at once (`AdmissionMeter`). An admitted buyer shops until their pass expires; one who has
  bought no longer counts against the cap (`counted_shoppers`).
- Since places are contiguous and admitted in order, a waiting buyer's people ahead are
  `place - 1 - admitted` (`position`): one broadcast number per event tells every socket its position.
"""
from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from domain.vocabulary import QueueStatus

_FAIR = random.SystemRandom()  # the draw is not predictable from earlier draws


def draw(user_ids: list[int], rng: random.Random = _FAIR) -> list[int]:
    """The pre-queue in a uniformly random order (Fisher-Yates); index i gets place first + i."""
    order = list(user_ids)
    rng.shuffle(order)
    return order


class AdmissionMeter:
    """How many of the waiting may be admitted now. A token bucket fills at `per_minute` and holds at most
    a few seconds' worth, so a quiet spell does not turn into a burst; the cap counts buyers shopping."""

    BURST_SECONDS = 5.0

    def __init__(self) -> None:
        self.tokens = 0.0
        self.last: float | None = None

    def due(self, now: float, waiting: int, shopping: int, per_minute: int | None, cap: int | None,
            paused: bool) -> int:
        """`now` is a monotonic clock in seconds."""
        elapsed = 0.0 if self.last is None else max(0.0, now - self.last)
        self.last = now
        if per_minute is not None:
            ceiling = max(1.0, per_minute / 60.0 * self.BURST_SECONDS)
            self.tokens = min(ceiling, self.tokens + elapsed * per_minute / 60.0)
        if paused or waiting <= 0:
            return 0
        allowed = waiting
        if per_minute is not None:
            allowed = min(allowed, int(self.tokens))
        if cap is not None:
            allowed = min(allowed, max(0, cap - shopping))
        return allowed

    def spend(self, admitted: int, per_minute: int | None) -> None:
        if per_minute is not None:
            self.tokens = max(0.0, self.tokens - admitted)


def counted_shoppers(passes: Iterable[int], checked_out: set[int]) -> int:
    """The buyers a cap (`maxShoppers`) counts: a pass in force and no order standing from their turn.

    A buyer who has bought keeps their pass until it ends (they may buy again, within the ticket limit),
    but frees their place under the cap at once: a cap then admits as fast as buyers check out, instead
    of one cap's worth per shopping time. A buyer who cancels that order is shopping again, and counts
    again (else order-and-cancel would let more shoppers in than the cap)."""
    return sum(1 for user_id in passes if user_id not in checked_out)


@dataclass(frozen=True)
class QueueFigures:
    """One event's waiting room as every watcher sees it (pushed to sockets, read by operators)."""

    event_id: int
    enabled: bool
    drawn: bool
    paused: bool
    sale_starts_at: datetime | None
    pre_queue: int  # joined before the draw, no place yet
    waiting: int  # with a place, not admitted yet
    admitted: int  # admitted so far (shopping or expired): the places 1..admitted are done
    shopping: int  # admitted, pass not expired, no order yet: what the cap counts (`counted_shoppers`)
    admitted_last_minute: int
    admission_per_minute: int | None
    max_shoppers: int | None

    @property
    def length(self) -> int:
        return self.pre_queue + self.waiting


def people_ahead(place: int, admitted: int) -> int:
    return max(0, place - 1 - admitted)


def needs_fresh_state(entry: "Place | None", figures: QueueFigures) -> bool:
    """Whether a copy of a buyer's entry kept outside the queue actor (a socket's) no longer tells their
    state from the broadcast figures alone: their turn came (place <= admitted: when, and until when, only
    the actor knows), or the pre-queue was drawn (their place is the actor's). Otherwise people ahead and
    the wait follow from (place, figures)."""
    if entry is None or entry.status is not QueueStatus.WAITING:
        return False
    if entry.place is None:
        return figures.drawn
    return entry.place <= figures.admitted


def estimated_wait_seconds(ahead: int, figures: QueueFigures) -> float | None:
    """At the set rate, or the rate seen over the last minute when only a cap meters admission.
    None when nothing is known (paused, or a cap and nobody admitted lately)."""
    if figures.paused:
        return None
    rate = figures.admission_per_minute or figures.admitted_last_minute
    if figures.admission_per_minute and figures.admitted_last_minute:
        rate = min(figures.admission_per_minute, figures.admitted_last_minute)
    if not rate:
        return None if ahead else 0.0
    return ahead * 60.0 / rate


@dataclass(frozen=True)
class Place:
    """One account's entry in an event's queue."""

    user_id: int
    place: int | None
    status: QueueStatus
    admitted_at: datetime | None = None
    pass_expires_at: datetime | None = None
