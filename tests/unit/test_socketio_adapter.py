"""The Socket.IO adapter's pure parts (deployments/realtime_sio.py): framing, handshake token, transports."""
from __future__ import annotations

import json

import pytest
from socketio import packet

from deployments.realtime_sio import encode, handshake_token, handshake_user_id, transports
from domain.errors import ApiError


def test_encode_is_a_socketio_event_of_the_namespace_that_the_library_decodes():
    text = encode("availability-update", {"eventId": 7, "availableTickets": 3})
    assert text.startswith("2/realtime,")
    decoded = packet.Packet(encoded_packet=text)
    assert (decoded.packet_type, decoded.namespace) == (packet.EVENT, "/realtime")
    assert decoded.data == ["availability-update", {"eventId": 7, "availableTickets": 3}]
    assert json.loads(text[len("2/realtime,"):])[1]["eventId"] == 7


def test_token_from_auth_then_query_then_bearer_header():
    environ = {"QUERY_STRING": "token=from-query&userId=3", "HTTP_AUTHORIZATION": "Bearer from-header"}
    assert handshake_token({"token": "from-auth"}, environ) == "from-auth"
    assert handshake_token({}, environ) == "from-query"
    assert handshake_token(None, {"HTTP_AUTHORIZATION": "Bearer from-header"}) == "from-header"
    assert handshake_token("not-a-dict", {"QUERY_STRING": "token=q"}) == "q"
    assert handshake_user_id(environ) == "3" and handshake_user_id({}) is None


@pytest.mark.parametrize("environ", [{}, {"QUERY_STRING": "token="}, {"HTTP_AUTHORIZATION": "Basic abc"}])
def test_no_token_is_a_401(environ):
    with pytest.raises(ApiError) as refused:
        handshake_token({"token": ""}, environ)
    assert refused.value.status == 401


def test_polling_only_with_exactly_one_replica():
    assert transports(True, 1) == ["polling", "websocket"]
    assert transports(True, 2) == ["websocket"]
    assert transports(True, None) == ["websocket"]  # autoscaling: the count may grow
    assert transports(False, 1) == ["websocket"]
