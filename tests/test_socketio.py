"""The Socket.IO endpoint (namespace /realtime at /socket.io/) with python-socketio's own AsyncClient.

Everything is real: Serve's proxy, the realtime replicas, the category actors, PostgreSQL. Waits are
"until this event arrives" with a generous bound (reaching the bound is a failure), never sleeps.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest
import socketio
from sqlalchemy import text

from domain.auth import issue_token
from tests.helpers import create_event, register
from tests.test_realtime import Client as PlainClient

WAIT_S = 30.0
CLOSE_WAIT_S = 10.0  # well under the 30 s after which the client stops waiting for an unanswered poll
NAMESPACE = "/realtime"


class SioClient:
    """An AsyncClient on the namespace that records every event, for `expect`."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.seen: list[tuple[str, object]] = []
        self.refused: dict | None = None
        self.sio.on("*", self._record, namespace=NAMESPACE)
        self.sio.on("connect_error", self._refused, namespace=NAMESPACE)
        self.sio.on("disconnect", self._gone, namespace=NAMESPACE)

    async def _record(self, event, *args) -> None:
        await self.inbox.put((event, args[0] if args else None))

    async def _refused(self, data) -> None:
        self.refused = data

    async def _gone(self, *reason) -> None:
        await self.inbox.put(("(disconnect)", reason[0] if reason else None))

    async def connect(self, base: str, token: str | None = None, *, auth: dict | None = None,
                      transports: list[str] | None = None, **kwargs) -> dict:
        await self.sio.connect(base, namespaces=[NAMESPACE], transports=transports or ["websocket"],
                               auth=auth if auth is not None else ({"token": token} if token else None),
                               wait_timeout=WAIT_S, **kwargs)
        return await self.expect("connected")

    async def expect(self, event: str, where=lambda data: True):
        for i, (name, data) in enumerate(self.seen):
            if name == event and where(data):
                return self.seen.pop(i)[1]
        while True:
            name, data = await asyncio.wait_for(self.inbox.get(), WAIT_S)
            if name == event and where(data):
                return data
            self.seen.append((name, data))

    async def next(self) -> tuple[str, object]:
        if self.seen:
            return self.seen.pop(0)
        return await asyncio.wait_for(self.inbox.get(), WAIT_S)

    async def emit(self, event: str, data: dict | None = None) -> None:
        await self.sio.emit(event, data, namespace=NAMESPACE)

    async def call(self, event: str, data: dict | None = None):
        """Emit with an acknowledgement callback; returns what the server acknowledged with."""
        return await self.sio.call(event, data, namespace=NAMESPACE, timeout=WAIT_S)

    async def availability(self, category_id: int, where=lambda data: True) -> dict:
        return await self.expect("availability-update", lambda d: d["categoryId"] == category_id and where(d))

    async def close(self) -> None:
        await self.sio.disconnect()


def run(scenario):
    return asyncio.run(scenario)


@pytest.fixture()
def event(http):
    org = register(http, "organizer")
    return create_event(http, org, seats=10, ticketCategories=[
        {"categoryName": "General", "price": "50.00", "totalSeats": 10},
        {"categoryName": "VIP", "price": "120.00", "totalSeats": 4},
    ])


def ids(event: dict) -> tuple[int, int, int]:
    return event["idEvent"], event["ticketCategories"][0]["id"], event["ticketCategories"][1]["id"]


def hold_status(db, lock_id: str) -> str:
    with db.connect() as conn:
        return conn.execute(text("SELECT status FROM holds WHERE id = :id"), {"id": lock_id}).scalar_one()


# ---- connect --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_connect_with_a_token_in_auth_as_the_seed_clients_do(socketio_url, http, transport):
    user = register(http)

    async def scenario():
        client = SioClient()
        connected = await client.connect(socketio_url, auth={"token": user["token"]},
                                         headers={}, transports=[transport])
        assert connected["success"] is True and connected["userId"] == user["id"]
        assert connected["username"] == user["username"] and connected["sessionId"]
        assert client.sio.transport() == transport
        reply = await client.call("heartbeat")
        assert reply["timestamp"].endswith("Z")
        assert (await client.expect("heartbeat-response")) == reply  # the event too, as seed clients wait for it
        # The client's disconnect waits for its last long poll: the server answers it at once, not after
        # its ping interval and timeout (45 s; the client gives up at 30 s).
        await asyncio.wait_for(client.close(), CLOSE_WAIT_S)

    run(scenario())


def test_default_client_upgrades_from_polling_to_websocket(socketio_url, http):
    user = register(http)

    async def scenario():
        client = SioClient()
        await client.sio.connect(socketio_url, namespaces=[NAMESPACE], auth={"token": user["token"]},
                                 wait_timeout=WAIT_S)  # default transports: polling first, then upgrade
        await client.expect("connected")
        assert (await client.call("heartbeat"))["timestamp"]
        await client.close()

    run(scenario())


def test_token_in_query_or_bearer_header_connects(socketio_url, http):
    user = register(http)

    async def scenario():
        by_query, by_header = SioClient(), SioClient()
        await by_query.sio.connect(f"{socketio_url}?token={user['token']}&userId={user['id']}",
                                   namespaces=[NAMESPACE], transports=["websocket"], wait_timeout=WAIT_S)
        await by_header.sio.connect(socketio_url, namespaces=[NAMESPACE], transports=["websocket"],
                                    headers={"Authorization": f"Bearer {user['token']}"}, wait_timeout=WAIT_S)
        for client in (by_query, by_header):
            assert (await client.expect("connected"))["userId"] == user["id"]
            await client.close()

    run(scenario())


def test_connect_without_a_valid_token_is_refused(socketio_url, http, jwt_secret):
    user, other = register(http), register(http)
    expired = issue_token(user["id"], user["username"], "assistant", jwt_secret, ttl_seconds=-60)
    forged = issue_token(user["id"], user["username"], "assistant", "another-secret-" + "x" * 40, ttl_seconds=600)
    attempts = [
        (None, "missing token!"),
        ({"token": "not-a-jwt"}, "Invalid Token!"),
        ({"token": expired}, None),
        ({"token": forged}, None),
        ({"token": user["token"], "userId": "ignored"}, "ok"),  # only a query userId is checked
    ]

    async def scenario():
        for auth, message in attempts:
            client = SioClient()
            if message == "ok":
                await client.connect(socketio_url, auth=auth)
                await client.close()
                continue
            with pytest.raises(socketio.exceptions.ConnectionError):
                await client.connect(socketio_url, auth=auth)
            assert client.refused is not None, auth
            assert client.refused["data"]["statusCode"] == 401, client.refused
            if message:
                assert client.refused["message"] == message
        # A seed client naming another user in its query is refused, not served as the token's user.
        client = SioClient()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.sio.connect(f"{socketio_url}?userId={other['id']}", namespaces=[NAMESPACE],
                                     transports=["websocket"], auth={"token": user["token"]},
                                     wait_timeout=WAIT_S)
        assert client.refused == {"message": "Unauthorized", "data": {"statusCode": 403, "message": "Unauthorized"}}

    run(scenario())


def test_socket_is_disconnected_when_its_token_expires(socketio_url, http, jwt_secret):
    user = register(http)
    short = issue_token(user["id"], user["username"], "assistant", jwt_secret, ttl_seconds=2)

    async def scenario():
        client, long_lived = SioClient(), SioClient()
        await client.connect(socketio_url, short)
        await long_lived.connect(socketio_url, user["token"])
        assert await client.expect("error") == {"message": "Token expired", "statusCode": 401}
        assert await client.expect("(disconnect)") == "server disconnect"
        assert (await long_lived.call("heartbeat"))["timestamp"]
        await long_lived.close()

    run(scenario())


# ---- messages ---------------------------------------------------------------------------------------------


def test_bad_events_get_an_error_and_keep_the_connection(socketio_url, http):
    user = register(http)

    async def scenario():
        client = SioClient()
        await client.connect(socketio_url, user["token"])
        assert await client.call("no-such-event", {}) == {"message": "Unknown event: no-such-event",
                                                          "statusCode": 400}
        assert (await client.expect("error"))["message"] == "Unknown event: no-such-event"
        await client.emit("join-event-room", "7")
        assert await client.expect("error") == {"message": "Invalid message: data must be a JSON object",
                                                "statusCode": 400}
        assert await client.call("join-event-room", {"eventId": "7"}) == {
            "message": "eventId must be a positive integer", "statusCode": 400}
        assert await client.call("lock-tickets", {"eventId": 1, "categoryId": 1, "quantity": "2"}) == {
            "success": False, "message": "quantity must be an integer between 1 and 1000", "statusCode": 400}
        assert (await client.call("heartbeat"))["timestamp"]
        await client.close()

    run(scenario())


def test_join_lock_and_unlock_with_acknowledgements_update_the_room(socketio_url, realtime, http, event, db):
    event_id, general, vip = ids(event)
    buyer = register(http)

    async def scenario():
        watcher, client = SioClient(), SioClient()
        await watcher.connect(socketio_url, register(http)["token"])
        await client.connect(socketio_url, buyer["token"])
        joined = await watcher.call("join-event-room", {"eventId": event_id, "userId": None})
        assert joined == {"success": True, "eventId": event_id, "message": f"Joined event {event_id} room"}
        assert await watcher.expect("joined-event-room") == joined
        first, second = await watcher.availability(general), await watcher.availability(vip)
        assert (first["availableTickets"], first["totalTickets"], second["totalTickets"]) == (10, 10, 4)

        # The seed's payload, with the caller's own userId.
        lock = await client.call("lock-tickets", {"eventId": event_id, "categoryId": general, "quantity": 3,
                                                  "userId": buyer["id"]})
        assert lock["success"] is True and lock["quantity"] == 3 and lock["availableTickets"] == 7
        assert uuid.UUID(lock["lockId"]) and lock["expiresAt"].endswith("Z")
        assert await client.expect("lock-tickets-response") == lock
        update = await watcher.availability(general, lambda d: d["lockedTickets"] == 3)
        assert update["availableTickets"] == 7
        # One truth with the HTTP API and the plain endpoint.
        assert [h["lockId"] for h in http.get("/api/holds", headers=buyer["headers"]).json()] == [lock["lockId"]]
        mine = await client.call("get-my-locks")
        assert [h["lockId"] for h in mine["locks"]] == [lock["lockId"]]

        again = await client.call("lock-tickets", {"eventId": event_id, "categoryId": general, "quantity": 1})
        assert again["success"] is False and again["statusCode"] == 409
        unlocked = await client.call("unlock-tickets", {"eventId": event_id, "categoryId": general})
        assert unlocked["success"] is True and unlocked["availableTickets"] == 10
        await watcher.availability(general, lambda d: d["lockedTickets"] == 0)

        left = await watcher.call("leave-event-room", {"eventId": event_id})
        assert left == {"success": True, "eventId": event_id, "message": f"Left event {event_id} room"}
        for client_ in (watcher, client):
            await client_.close()
        assert hold_status(db, lock["lockId"]) == "released"

    run(scenario())


def test_another_buyers_http_order_reaches_socketio_and_plain_watchers(socketio_url, realtime, http, event):
    event_id, general, _ = ids(event)
    buyer = register(http)

    async def scenario():
        watcher = SioClient()
        await watcher.connect(socketio_url, register(http)["token"])
        await watcher.call("join-event-room", {"eventId": event_id})
        await watcher.availability(general, lambda d: d["availableTickets"] == 10)
        with PlainClient(realtime, register(http)["token"]) as plain:
            plain.join(event_id)
            plain.availability(general, lambda d: d["availableTickets"] == 10)
            r = http.post("/api/orders", json={"eventId": event_id, "categoryId": general, "quantity": 2},
                          headers=buyer["headers"])
            assert r.status_code == 201, r.text
            sold = await watcher.availability(general, lambda d: d["soldTickets"] == 2)
            assert (sold["availableTickets"], sold["totalTickets"]) == (8, 10)
            assert plain.availability(general, lambda d: d["soldTickets"] == 2) == sold
        await watcher.close()

    run(scenario())


def test_order_notices_reach_only_the_buyers_own_sockets(socketio_url, realtime, http, event):
    event_id, general, _ = ids(event)
    buyer, other = register(http), register(http)

    async def scenario():
        tab1, tab2, stranger = SioClient(), SioClient(), SioClient()
        await tab1.connect(socketio_url, buyer["token"])
        await tab2.connect(socketio_url, buyer["token"], transports=["polling"])
        await stranger.connect(socketio_url, other["token"])
        with PlainClient(realtime, buyer["token"]) as plain_tab:
            r = http.post("/api/orders", json={"eventId": event_id, "categoryId": general, "quantity": 2},
                          headers=buyer["headers"])
            assert r.status_code == 201, r.text
            order_id = r.json()["id"]
            expected = {"orderId": order_id, "eventId": event_id, "categoryId": general, "quantity": 2,
                        "message": "Your order has been completed successfully!"}
            for tab in (tab1, tab2):
                assert await tab.expect("order-completed") == expected
            assert plain_tab.expect("order-completed") == expected
        # The stranger's next event is the reply to its own heartbeat: the notice passed it by.
        await stranger.emit("heartbeat")
        assert (await stranger.next())[0] == "heartbeat-response"
        r = http.post(f"/api/orders/{order_id}/cancel", headers=buyer["headers"])
        assert r.status_code == 201, r.text
        for tab in (tab1, tab2):
            assert (await tab.expect("order-cancelled"))["orderId"] == order_id
        await stranger.emit("heartbeat")
        assert (await stranger.next())[0] == "heartbeat-response"
        for client in (tab1, tab2, stranger):
            await client.close()

    run(scenario())


def test_disconnect_releases_the_connections_holds(socketio_url, http, event, db):
    event_id, general, vip = ids(event)
    buyer = register(http)

    async def scenario():
        watcher, client = SioClient(), SioClient()
        await watcher.connect(socketio_url, register(http)["token"])
        await watcher.call("join-event-room", {"eventId": event_id})
        await watcher.availability(general, lambda d: d["availableTickets"] == 10)
        r = http.post("/api/holds", json={"eventId": event_id, "categoryId": vip, "quantity": 1},
                      headers=buyer["headers"])
        assert r.status_code == 201, r.text
        await client.connect(socketio_url, buyer["token"])
        lock = await client.call("lock-tickets", {"eventId": event_id, "categoryId": general, "quantity": 5})
        assert lock["success"] is True
        await watcher.availability(general, lambda d: d["lockedTickets"] == 5)
        await client.close()
        released = await watcher.availability(general, lambda d: d["lockedTickets"] == 0)
        assert released["availableTickets"] == 10
        await watcher.close()
        return lock["lockId"], r.json()["lockId"]

    socket_hold, http_hold = run(scenario())
    assert hold_status(db, socket_hold) == "released"
    assert hold_status(db, http_hold) == "active"  # an HTTP hold of the same user is not the socket's


def test_payload_user_id_cannot_act_for_someone_else(socketio_url, http, event):
    event_id, general, _ = ids(event)
    attacker, victim = register(http), register(http)

    async def scenario():
        client = SioClient()
        await client.connect(socketio_url, attacker["token"])
        for spoof in (victim["id"], str(victim["id"]), True):
            refused = await client.call("lock-tickets", {"eventId": event_id, "categoryId": general,
                                                         "quantity": 1, "userId": spoof})
            assert refused == {"success": False, "message": "Unauthorized", "statusCode": 403}
        assert await client.call("join-event-room", {"eventId": event_id, "userId": victim["id"]}) == {
            "message": "Unauthorized", "statusCode": 403}
        await client.close()

    run(scenario())
    assert http.get("/api/holds", headers=victim["headers"]).json() == []
    assert http.get("/api/holds", headers=attacker["headers"]).json() == []


def test_stats_and_unknown_paths(socketio_url, http):
    assert http.get(f"{socketio_url}/socket.io/stats").json()["connections"] >= 0
    assert http.get(f"{socketio_url}/socket.io/nothing-here").status_code == 404
