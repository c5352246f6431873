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


def test_a_client_that_left_during_its_connect_leaves_no_link_behind(tmp_path):
    """python-socketio does not call the disconnect handler for a client that leaves while its connect
    handler runs (the replica waiting for its first poll); the link must still go when its session ends."""
    import asyncio
    from types import SimpleNamespace

    import socketio

    from deployments.realtime import RealtimeCore
    from deployments.realtime_session import Session
    from deployments.realtime_sio import RealtimeSocketIO
    from domain.auth import Principal

    adapter_class = RealtimeSocketIO.func_or_class  # its methods, on the parts they use (Serve's wrapper aside)

    async def scenario():
        adapter = SimpleNamespace(core=RealtimeCore("postgresql+psycopg://nobody@127.0.0.1:9/none", str(tmp_path)),
                                  sio=socketio.AsyncServer(async_mode="asgi"), links={})
        adapter._sender = lambda eio_sid: adapter_class._sender(adapter, eio_sid)
        session = Session("s1", 7)
        gone = asyncio.get_running_loop().create_future()
        adapter.links["sid-1"] = (session, gone)  # as _connect leaves it once core.open() has returned
        gone.set_result(None)  # the client had already left: no disconnect handler will run for it
        await adapter_class._live(adapter, "sid-1", session, Principal(7, "buyer", "assistant"), gone)
        assert "sid-1" not in adapter.links
    asyncio.run(scenario())
