"""The realtime protocol's pure parts (domain/realtime.py), without Ray or sockets."""
from __future__ import annotations

import json

import pytest

from domain import realtime as proto


def test_parse_accepts_known_events_with_or_without_data():
    assert proto.parse_message('{"event": "heartbeat"}') == proto.ClientMessage("heartbeat", {})
    msg = proto.parse_message('{"event": "join-event-room", "data": {"eventId": 3}}')
    assert msg == proto.ClientMessage("join-event-room", {"eventId": 3})


@pytest.mark.parametrize("text, reason", [
    ("nope", "Invalid message"),
    ("[]", "Invalid message"),
    ('{"data": {}}', "Invalid message"),
    ('{"event": 5}', "Invalid message"),
    ('{"event": "heartbeat", "data": [1]}', "data must be a JSON object"),
    ('{"event": "order-completed"}', "Unknown event: order-completed"),
    ('{"event": "x", "data": "' + "a" * proto.MAX_MESSAGE_CHARS + '"}', "Message too large"),
])
def test_parse_refuses_malformed_messages(text, reason):
    with pytest.raises(proto.ProtocolError) as refused:
        proto.parse_message(text)
    assert reason in refused.value.message and refused.value.status == 400


@pytest.mark.parametrize("value", [None, "3", 0, -1, 2**31, 1.0, True])
def test_ids_must_be_positive_32_bit_integers(value):
    with pytest.raises(proto.ProtocolError):
        proto.positive_id({"eventId": value}, "eventId")


def test_identity_comes_from_the_token():
    proto.check_identity({}, 7)
    proto.check_identity({"userId": 7}, 7)
    proto.check_identity({"userId": "7"}, 7)  # seed clients may send it as a string
    for claimed in (8, "8", True, 7.0, [7], {"id": 7}):
        with pytest.raises(proto.ProtocolError) as refused:
            proto.check_identity({"userId": claimed}, 7)
        assert (refused.value.message, refused.value.status) == ("Unauthorized", 403)


def test_availability_maps_actor_figures_to_the_seed_payload():
    figures = {"eventId": 1, "categoryId": 2, "totalSeats": 10, "soldSeats": 3, "heldSeats": 2,
               "availableSeats": 5, "onSale": True, "committedAt": 1_700_000_000.5}
    assert proto.availability(figures) == {
        "eventId": 1, "categoryId": 2, "availableTickets": 5, "lockedTickets": 2, "soldTickets": 3,
        "totalTickets": 10, "onSale": True, "timestamp": "2023-11-14T22:13:20.500Z",
    }


def test_db_figures_never_go_negative():
    assert proto.db_figures(1, 2, 5, 4, 3, True)["availableSeats"] == 0


def test_message_is_compact_json():
    assert json.loads(proto.message("heartbeat-response", {"timestamp": "t"})) == {
        "event": "heartbeat-response", "data": {"timestamp": "t"}}


def test_order_notices_are_the_seeds_per_user_messages():
    from types import SimpleNamespace as Row

    from domain.realtime import order_notices

    notices = order_notices(3, 9, [Row(id=12, user_id=5, quantity=2)], [Row(id=11, user_id=6, quantity=1)])
    assert notices == [
        ("order-completed", 5, {"orderId": "12", "eventId": 3, "categoryId": 9, "quantity": 2,
                                "message": "Your order has been completed successfully!"}),
        ("order-cancelled", 6, {"orderId": "11", "eventId": 3, "categoryId": 9, "quantity": 1,
                                "message": "Your order has been cancelled. Tickets are now available again."}),
    ]
    assert order_notices(3, 9, [], []) == []


def test_a_sockets_message_budget_is_a_burst_then_a_steady_rate():
    budget = proto.MessageBudget()
    assert all(budget.take(100.0) for _ in range(proto.MESSAGE_BURST))
    assert not budget.take(100.0)  # the burst is spent
    back = 0.5 * proto.MESSAGE_RATE  # the messages half a second brings back
    assert sum(budget.take(100.5) for _ in range(int(back) + 5)) == back
    assert sum(budget.take(1000.0) for _ in range(2 * proto.MESSAGE_BURST)) == proto.MESSAGE_BURST  # full, no more


def test_messages_past_the_budget_are_refused_429_but_heartbeats_are_free():
    budget = proto.MessageBudget(tokens=0, at=5.0)
    proto.check_message_budget(budget, "heartbeat", 5.0)
    with pytest.raises(proto.ProtocolError) as refused:
        proto.check_message_budget(budget, "get-my-locks", 5.0)
    assert (refused.value.status, refused.value.message) == (429, proto.TOO_MANY_MESSAGES)
    assert proto.MESSAGE_BURST > proto.MAX_ROOMS_PER_SOCKET  # a client may join its every room at once
