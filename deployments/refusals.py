"""A category's refusal → the HTTP status and the message a client sees (the seed's wording where the
seed had one). The one place where the domain's reasons become statuses and English, for HTTP and
WebSocket answers alike; nothing else branches on a message's text.
"""
from __future__ import annotations

from domain.errors import ApiError
from domain.inventory import Outcome, Refusal

INVALID_LOCK = "Ticket lock has expired or is invalid"

# Refusals whose status and message need nothing from the request.
_FIXED: dict[Refusal, tuple[int, str]] = {
    Refusal.CATEGORY_NOT_FOUND: (404, "Ticket category not found"),
    Refusal.ALREADY_HOLDING: (409, "You already have tickets locked for this category"),
    Refusal.NO_HOLD_TO_RELEASE: (404, "No tickets found to unlock"),
    Refusal.INVALID_HOLD: (400, INVALID_LOCK),
    Refusal.NOT_CANCELLABLE: (400, "Only confirmed orders can be cancelled"),
    Refusal.NOT_YOUR_ORDER: (403, "You can only cancel your own orders"),
    Refusal.DUPLICATE_IDEMPOTENCY_KEY: (409, "duplicate idempotency key"),
    Refusal.CONFLICT: (409, "Request conflicts with the current state; try again"),
    Refusal.UNAVAILABLE: (503, "Service temporarily unavailable, please retry"),
}


def status_and_message(outcome: Outcome, event_id: int, quantity: object = None) -> tuple[int, str]:
    """`event_id` and `quantity` are the request's (the messages quote them)."""
    refusal = outcome.refusal
    if refusal in _FIXED:
        return _FIXED[refusal]
    if refusal is Refusal.OFF_SALE:
        return 404, f"Event with ID {event_id} not found"
    if refusal is Refusal.EVENT_PAST:
        return 400, f"Event with ID {event_id} has already taken place"
    if refusal is Refusal.BAD_QUANTITY:
        return 400, f"quantity must be an integer between 1 and {outcome.limit}"
    if refusal is Refusal.NOT_ENOUGH_TO_HOLD:
        return 400, f"Only {outcome.available} tickets available"
    if refusal is Refusal.NOT_ENOUGH_TO_BUY:
        return 400, f"Not enough tickets available. Only {outcome.available} tickets left"
    if refusal is Refusal.QUANTITY_MISMATCH:
        return 400, f"quantity {quantity} does not match the ticket lock ({outcome.limit})"
    raise ValueError(f"not a refusal: {outcome!r}")


def refusal_error(outcome: Outcome, event_id: int, quantity: object = None) -> ApiError:
    status, message = status_and_message(outcome, event_id, quantity)
    return ApiError(message, status)
