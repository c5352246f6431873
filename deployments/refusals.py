"""A category's refusal → the HTTP status and the message a client sees (the seed's wording where the
seed had one). The one place where the domain's reasons become statuses and English, for HTTP and
WebSocket answers alike; nothing else branches on a message's text.
"""
from __future__ import annotations

from domain.errors import ApiError
from domain.inventory import Outcome, Refusal

INVALID_LOCK = "Ticket lock has expired or is invalid"

# Each refusal's status and message; a message may quote the request's event id and quantity, or the
# figures the refusal carries (seats available, the limit broken).
_ANSWERS: dict[Refusal, tuple[int, str]] = {
    Refusal.CATEGORY_NOT_FOUND: (404, "Ticket category not found"),
    Refusal.OFF_SALE: (404, "Event with ID {event_id} not found"),
    Refusal.EVENT_PAST: (400, "Event with ID {event_id} has already taken place"),
    Refusal.BAD_QUANTITY: (400, "quantity must be an integer between 1 and {limit}"),
    Refusal.ALREADY_HOLDING: (409, "You already have tickets locked for this category"),
    Refusal.NOT_ENOUGH_TO_HOLD: (400, "Only {available} tickets available"),
    Refusal.NOT_ENOUGH_TO_BUY: (400, "Not enough tickets available. Only {available} tickets left"),
    Refusal.NO_HOLD_TO_RELEASE: (404, "No tickets found to unlock"),
    Refusal.INVALID_HOLD: (400, INVALID_LOCK),
    Refusal.QUANTITY_MISMATCH: (400, "quantity {quantity} does not match the ticket lock ({limit})"),
    Refusal.NOT_CANCELLABLE: (400, "Only confirmed orders can be cancelled"),
    Refusal.NOT_YOUR_ORDER: (403, "You can only cancel your own orders"),
    Refusal.DUPLICATE_IDEMPOTENCY_KEY: (409, "duplicate idempotency key"),
    Refusal.TICKET_LIMIT: (400, "You can buy at most {limit} tickets for this event"),
    Refusal.CONFLICT: (409, "Request conflicts with the current state; try again"),
    Refusal.UNAVAILABLE: (503, "Service temporarily unavailable, please retry"),
}


def status_and_message(outcome: Outcome, event_id: int, quantity: object = None) -> tuple[int, str]:
    """`event_id` and `quantity` are the request's (the messages quote them)."""
    if outcome.refusal is None:
        raise ValueError(f"not a refusal: {outcome!r}")
    status, template = _ANSWERS[outcome.refusal]
    return status, template.format(event_id=event_id, quantity=quantity, available=outcome.available,
                                   limit=outcome.limit)


def refusal_error(outcome: Outcome, event_id: int, quantity: object = None) -> ApiError:
    status, message = status_and_message(outcome, event_id, quantity)
    return ApiError(message, status)
