"""The edge's answers to a category's outcomes: every refusal has a status and the seed's message, and
the WebSocket payloads keep the seed's shapes. No Ray, no database."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from deployments.refusals import refusal_error, status_and_message
from deployments.views import lock_response, unlock_response
from domain.inventory import ActiveHold, Outcome, Refusal, refuse

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("refusal", list(Refusal))
def test_every_refusal_has_a_client_error_status_and_a_message(refusal):
    status, message = status_and_message(refuse(refusal, available=3, limit=10), event_id=7, quantity=2)
    assert 400 <= status < 600 and message and "None" not in message


@pytest.mark.parametrize(("outcome", "expected"), [
    (refuse(Refusal.NOT_ENOUGH_TO_HOLD, 2), (400, "Only 2 tickets available")),
    (refuse(Refusal.NOT_ENOUGH_TO_BUY, 1), (400, "Not enough tickets available. Only 1 tickets left")),
    (refuse(Refusal.OFF_SALE), (404, "Event with ID 7 not found")),
    (refuse(Refusal.EVENT_PAST), (400, "Event with ID 7 has already taken place")),
    (refuse(Refusal.BAD_QUANTITY, limit=10), (400, "quantity must be an integer between 1 and 10")),
    (refuse(Refusal.QUANTITY_MISMATCH, limit=3), (400, "quantity 2 does not match the ticket lock (3)")),
    (refuse(Refusal.ALREADY_HOLDING, 5), (409, "You already have tickets locked for this category")),
    (refuse(Refusal.INVALID_HOLD), (400, "Ticket lock has expired or is invalid")),
    (refuse(Refusal.NOT_YOUR_ORDER), (403, "You can only cancel your own orders")),
    (refuse(Refusal.TICKET_LIMIT, 8, limit=4), (400, "You can buy at most 4 tickets for this event")),
    (refuse(Refusal.UNAVAILABLE), (503, "Service temporarily unavailable, please retry")),
])
def test_refusal_wording(outcome, expected):
    assert status_and_message(outcome, event_id=7, quantity=2) == expected
    error = refusal_error(outcome, event_id=7, quantity=2)
    assert (error.status, error.message) == expected


def test_a_granted_outcome_is_not_a_refusal():
    with pytest.raises(ValueError):
        status_and_message(Outcome(available=3), event_id=1)


def test_lock_response_shapes():
    hold = ActiveHold(uuid.UUID(int=1), user_id=5, quantity=3, created_at=NOW, expires_at=NOW)
    assert lock_response(Outcome(hold=hold, available=7), 1, 2, 3) == {
        "success": True, "lockId": str(uuid.UUID(int=1)), "eventId": 1, "categoryId": 2, "quantity": 3,
        "expiresAt": "2030-01-01T00:00:00Z", "availableTickets": 7}
    assert lock_response(refuse(Refusal.NOT_ENOUGH_TO_HOLD, 2), 1, 2, 3) == {
        "success": False, "message": "Only 2 tickets available", "statusCode": 400, "availableTickets": 2}
    assert lock_response(refuse(Refusal.TICKET_LIMIT, 6, limit=4), 1, 2, 3) == {
        "success": False, "message": "You can buy at most 4 tickets for this event", "statusCode": 400,
        "availableTickets": 6}


def test_unlock_response_shapes():
    assert unlock_response(Outcome(released=2, available=9), 1) == {
        "success": True, "message": "Tickets unlocked successfully", "released": 2, "availableTickets": 9}
    assert unlock_response(refuse(Refusal.NO_HOLD_TO_RELEASE, 4), 1) == {
        "success": False, "message": "No tickets found to unlock", "statusCode": 404, "availableTickets": 4}
