"""The realtime WebSocket endpoint through Serve's proxy, with real `websockets` clients.

Waits are "until this message arrives" with a generous bound (a bound that passes means a failure),
never sleeps. Ordering facts used below: a socket always ends on the newest figures of each category
(it may skip intermediate ones, so tests wait for states that last), and a socket's replies leave in
the order they were queued.
"""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import text
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from domain.auth import issue_token
from tests.helpers import create_event, register

WAIT_S = 30.0


class Client:
    """A WebSocket client speaking {"event", "data"} JSON, with a buffer for out-of-order reads."""

    def __init__(self, url: str, token: str | None = None, headers: dict | None = None) -> None:
        target = url if token is None else f"{url}?token={token}"
        self.ws: ClientConnection = connect(target, additional_headers=headers, proxy=None, open_timeout=WAIT_S)
        self.seen: list[dict] = []
        self.connected = self.expect("connected")

    def send(self, event: str, data: dict | None = None) -> None:
        self.ws.send(json.dumps({"event": event, "data": data or {}}))

    def next(self) -> dict:
        return json.loads(self.ws.recv(timeout=WAIT_S))

    def expect(self, event: str, where=lambda data: True) -> dict:
        """The first message (buffered or new) named `event` whose data satisfies `where`."""
        for i, msg in enumerate(self.seen):
            if msg["event"] == event and where(msg["data"]):
                return self.seen.pop(i)["data"]
        while True:
            msg = self.next()
            if msg["event"] == event and where(msg["data"]):
                return msg["data"]
            self.seen.append(msg)

    def availability(self, category_id: int, where=lambda data: True) -> dict:
        return self.expect("availability-update", lambda d: d["categoryId"] == category_id and where(d))

    def join(self, event_id: int) -> dict:
        self.send("join-event-room", {"eventId": event_id})
        return self.expect("joined-event-room")

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture()
def org(http):
    return register(http, "organizer")


@pytest.fixture()
def event(http, org):
    """An event with two categories: 10 seats and 4 seats."""
    return create_event(http, org, seats=10, ticketCategories=[
        {"categoryName": "General", "price": "50.00", "totalSeats": 10},
        {"categoryName": "VIP", "price": "120.00", "totalSeats": 4},
    ])


def ids(event: dict) -> tuple[int, int, int]:
    return event["idEvent"], event["ticketCategories"][0]["id"], event["ticketCategories"][1]["id"]


def hold_status(db, lock_id: str) -> str:
    with db.connect() as conn:
        return conn.execute(text("SELECT status FROM holds WHERE id = :id"), {"id": lock_id}).scalar_one()


# ---- handshake ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "not-a-jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."])
def test_handshake_without_a_valid_token_is_refused(realtime, token):
    url = realtime if token is None else f"{realtime}?token={token}"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, proxy=None, open_timeout=WAIT_S)
    assert refused.value.response.status_code == 401
    body = json.loads(refused.value.response.body)
    assert body["statusCode"] == 401 and body["error"] == "Unauthorized"


def test_handshake_with_an_expired_or_forged_token_is_refused(realtime, http, jwt_secret):
    user = register(http)
    expired = issue_token(user["id"], user["username"], "assistant", jwt_secret, ttl_seconds=-60)
    forged = issue_token(user["id"], user["username"], "assistant", "some-other-secret-" + "x" * 40, ttl_seconds=600)
    for token in (expired, forged):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{realtime}?token={token}", proxy=None, open_timeout=WAIT_S)
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            connect(realtime, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None)


def test_an_open_socket_is_closed_when_its_token_expires(realtime, http, jwt_secret):
    user = register(http)
    short = issue_token(user["id"], user["username"], "assistant", jwt_secret, ttl_seconds=2)
    with Client(realtime, short) as client, Client(realtime, user["token"]) as long_lived:
        assert client.expect("error")["message"] == "Token expired"
        with pytest.raises(ConnectionClosed) as closed:
            client.next()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        long_lived.send("heartbeat")  # a socket whose token is still valid stays open
        assert long_lived.expect("heartbeat-response")["timestamp"]


def test_valid_token_in_query_or_header_connects_as_that_user(realtime, http):
    user = register(http)
    with Client(realtime, user["token"]) as by_query, \
            Client(realtime, headers={"Authorization": f"Bearer {user['token']}"}) as by_header:
        for client in (by_query, by_header):
            assert client.connected["success"] is True
            assert client.connected["userId"] == user["id"]
        assert by_query.connected["sessionId"] != by_header.connected["sessionId"]
        by_query.send("heartbeat")
        assert by_query.expect("heartbeat-response")["timestamp"].endswith("Z")


# ---- messages that make no sense ----------------------------------------------------------------------


def test_bad_messages_get_an_error_and_keep_the_socket(realtime, http):
    user = register(http)
    with Client(realtime, user["token"]) as client:
        client.ws.send("not json")
        assert "Invalid message" in client.expect("error")["message"]
        client.send("no-such-event", {})
        assert client.expect("error")["message"] == "Unknown event: no-such-event"
        client.send("join-event-room", {"eventId": "7"})
        assert client.expect("error") == {"message": "eventId must be a positive integer", "statusCode": 400}
        client.send("join-event-room", {"eventId": 2**31 - 2})
        assert client.expect("error")["statusCode"] == 404
        client.send("lock-tickets", {"eventId": 1, "categoryId": 1, "quantity": "2"})
        assert client.expect("lock-tickets-response") == {
            "success": False, "message": "quantity must be an integer between 1 and 1000", "statusCode": 400}
        client.ws.send(b"\x00binary")
        assert client.expect("error")["message"] == "Binary messages are not supported"
        client.send("heartbeat")
        client.expect("heartbeat-response")


# ---- rooms ------------------------------------------------------------------------------------------


def test_a_socket_is_in_at_most_50_event_rooms_at_once(realtime, http, db):
    """Every change of availability walks each socket's rooms: one client in every room of the catalogue
    would slow every watcher of its replica."""
    user = register(http, "organizer")
    with db.begin() as conn:
        events = conn.execute(text("INSERT INTO events (name, category, event_date, created_by) "
                                   "SELECT 'Room ' || g, 'music', now() + interval '30 days', :u "
                                   "FROM generate_series(1, 51) g RETURNING id"), {"u": user["id"]}).scalars().all()
    with Client(realtime, user["token"]) as client:
        for event_id in events[:50]:
            assert client.join(event_id)["success"] is True
        client.send("join-event-room", {"eventId": events[50]})
        assert client.expect("error") == {
            "message": "Too many event rooms on this socket (at most 50): leave one first", "statusCode": 400}
        assert client.join(events[0])["success"] is True  # a room it is in already: no new room
        client.send("leave-event-room", {"eventId": events[0]})
        client.expect("left-event-room")
        assert client.join(events[50])["success"] is True


def test_a_socket_that_floods_messages_is_answered_429_and_kept(realtime, http):
    """Most messages read the database: one socket looping on them is held to its budget, and only it."""
    from domain.realtime import MESSAGE_BURST, TOO_MANY_MESSAGES

    user = register(http)
    with Client(realtime, user["token"]) as flooder, Client(realtime, register(http)["token"]) as other:
        for _ in range(MESSAGE_BURST + 20):  # sent without waiting, faster than the budget refills
            flooder.send("get-my-locks")
        replies = [flooder.next() for _ in range(MESSAGE_BURST + 20)]
        refused = [m for m in replies if m["event"] == "error"]
        assert refused and all(m["data"] == {"message": TOO_MANY_MESSAGES, "statusCode": 429} for m in refused)
        assert {m["event"] for m in replies} == {"my-locks-response", "error"}
        flooder.send("heartbeat")  # free, and the socket is still open
        flooder.expect("heartbeat-response")
        other.send("get-my-locks")  # another socket keeps its own budget
        assert other.expect("my-locks-response") == {"locks": []}


def test_join_sends_current_availability_of_every_category_at_once(realtime, http, event):
    event_id, general, vip = ids(event)
    user = register(http)
    with Client(realtime, user["token"]) as client:
        joined = client.join(event_id)
        assert joined == {"success": True, "eventId": event_id, "message": f"Joined event {event_id} room"}
        first = client.availability(general)
        second = client.availability(vip)
        assert (first["availableTickets"], first["lockedTickets"], first["totalTickets"]) == (10, 0, 10)
        assert (second["availableTickets"], second["lockedTickets"], second["totalTickets"]) == (4, 0, 4)
        assert first["eventId"] == event_id and first["timestamp"].endswith("Z")


def test_join_after_changes_shows_the_changed_figures(realtime, http, event):
    event_id, general, _ = ids(event)
    buyer = register(http)
    r = http.post("/api/orders", json={"eventId": event_id, "categoryId": general, "quantity": 3},
                  headers=buyer["headers"])
    assert r.status_code == 201, r.text
    with Client(realtime, register(http)["token"]) as client:
        client.join(event_id)
        figures = client.availability(general)
        assert (figures["availableTickets"], figures["soldTickets"], figures["totalTickets"]) == (7, 3, 10)


def test_leaving_a_room_stops_its_updates(realtime, http, event):
    event_id, general, _ = ids(event)
    holder = register(http)
    with Client(realtime, register(http)["token"]) as stays, Client(realtime, register(http)["token"]) as leaves:
        for client in (stays, leaves):
            client.join(event_id)
            client.availability(general)
        leaves.send("leave-event-room", {"eventId": event_id})
        assert leaves.expect("left-event-room") == {"success": True, "eventId": event_id,
                                                    "message": f"Left event {event_id} room"}
        r = http.post("/api/holds", json={"eventId": event_id, "categoryId": general, "quantity": 1},
                      headers=holder["headers"])
        assert r.status_code == 201, r.text
        stays.availability(general, lambda d: d["lockedTickets"] == 1)
        # The fan-out that reached `stays` has passed `leaves` too; its next message is the heartbeat reply.
        leaves.send("heartbeat")
        assert leaves.next()["event"] == "heartbeat-response"


# ---- holds over the socket, seen by everyone in the room -----------------------------------------------


def test_hold_and_release_over_websocket_update_other_clients(realtime, http, event):
    event_id, general, _ = ids(event)
    buyer = register(http)
    with Client(realtime, register(http)["token"]) as watcher, Client(realtime, buyer["token"]) as client:
        watcher.join(event_id)
        watcher.availability(general, lambda d: d["availableTickets"] == 10)
        client.send("lock-tickets", {"eventId": event_id, "categoryId": general, "quantity": 3})
        lock = client.expect("lock-tickets-response")
        assert lock["success"] is True and lock["availableTickets"] == 7 and lock["quantity"] == 3
        assert lock["expiresAt"].endswith("Z") and uuid.UUID(lock["lockId"])
        update = watcher.availability(general, lambda d: d["lockedTickets"] == 3)
        assert (update["availableTickets"], update["totalTickets"]) == (7, 10)
        # One truth: the HTTP API sees the socket's hold as the user's hold.
        holds = http.get("/api/holds", headers=buyer["headers"]).json()
        assert [h["lockId"] for h in holds] == [lock["lockId"]]
        client.send("get-my-locks")
        assert [h["lockId"] for h in client.expect("my-locks-response")["locks"]] == [lock["lockId"]]

        client.send("lock-tickets", {"eventId": event_id, "categoryId": general, "quantity": 1})
        again = client.expect("lock-tickets-response")
        assert again["success"] is False and again["message"] == "You already have tickets locked for this category"

        client.send("unlock-tickets", {"eventId": event_id, "categoryId": general})
        assert client.expect("unlock-tickets-response")["success"] is True
        update = watcher.availability(general, lambda d: d["lockedTickets"] == 0)
        assert update["availableTickets"] == 10
        client.send("unlock-tickets", {"eventId": event_id, "categoryId": general})
        assert client.expect("unlock-tickets-response") == {
            "success": False, "message": "No tickets found to unlock", "statusCode": 404, "availableTickets": 10}


def test_hold_refusals_change_nothing(realtime, http, event):
    event_id, _, vip = ids(event)
    buyer = register(http)
    with Client(realtime, buyer["token"]) as client:
        client.send("lock-tickets", {"eventId": event_id, "categoryId": vip, "quantity": 5})
        assert client.expect("lock-tickets-response") == {
            "success": False, "message": "Only 4 tickets available", "statusCode": 400, "availableTickets": 4}
        client.send("lock-tickets", {"eventId": event_id, "categoryId": vip, "quantity": 0})
        assert client.expect("lock-tickets-response")["statusCode"] == 400
        client.send("lock-tickets", {"eventId": event_id, "categoryId": 2**31 - 3, "quantity": 1})
        assert client.expect("lock-tickets-response")["message"] == "Ticket category not found"
    assert http.get("/api/holds", headers=buyer["headers"]).json() == []


def test_http_hold_purchase_and_cancel_update_the_room(realtime, http, event):
    event_id, general, _ = ids(event)
    buyer = register(http)
    with Client(realtime, register(http)["token"]) as watcher:
        watcher.join(event_id)
        watcher.availability(general, lambda d: d["availableTickets"] == 10)
        r = http.post("/api/holds", json={"eventId": event_id, "categoryId": general, "quantity": 2},
                      headers=buyer["headers"])
        assert r.status_code == 201, r.text
        watcher.availability(general, lambda d: d["lockedTickets"] == 2 and d["availableTickets"] == 8)
        r = http.post("/api/orders/with-lock", json={"eventId": event_id, "categoryId": general, "quantity": 2,
                                                     "lockId": r.json()["lockId"]}, headers=buyer["headers"])
        assert r.status_code == 201, r.text
        sold = watcher.availability(general, lambda d: d["soldTickets"] == 2)
        assert (sold["availableTickets"], sold["lockedTickets"]) == (8, 0)
        r = http.post(f"/api/orders/{r.json()['id']}/cancel", headers=buyer["headers"])
        assert r.status_code == 201, r.text
        back = watcher.availability(general, lambda d: d["soldTickets"] == 0)
        assert back["availableTickets"] == 10


def test_a_broadcaster_stopped_for_good_is_replaced(realtime, http, event):
    """The dashboard can stop any actor for good (`ray.kill` without restart). Every process that calls the
    broadcaster then starts a new one under its name (or finds it), instead of calling the dead one."""
    import ray

    from actors import NAMESPACE
    from actors.broadcaster import BROADCASTER_NAME

    event_id, general, _ = ids(event)
    ray.kill(ray.get_actor(BROADCASTER_NAME, namespace=NAMESPACE), no_restart=True)
    with Client(realtime, register(http)["token"]) as watcher:
        assert watcher.join(event_id)["success"] is True
        watcher.availability(general, lambda d: d["availableTickets"] == 10)
        for _ in range(2):  # the category's first publish may go to the dead one: the next goes to the new
            r = http.post("/api/holds", json={"eventId": event_id, "categoryId": general, "quantity": 1},
                          headers=register(http)["headers"])
            assert r.status_code == 201, r.text
        seen = watcher.availability(general, lambda d: d["lockedTickets"] == 2)
        assert seen["availableTickets"] == 8
    assert ray.get(ray.get_actor(BROADCASTER_NAME, namespace=NAMESPACE).current.remote(event_id), timeout=30)


def test_watchers_see_a_deleted_event_go_off_sale_whether_its_actors_run_or_not(realtime, http, org, event):
    """A running actor publishes the change itself. A category whose actor does not run (it retired, or was
    stopped from the dashboard) has its figures published from the database by the deletion."""
    import ray

    from actors import NAMESPACE, category_actor_name

    event_id, general, vip = ids(event)
    ray.kill(ray.get_actor(category_actor_name(event_id, vip), namespace=NAMESPACE), no_restart=True)
    with Client(realtime, register(http)["token"]) as watcher:
        watcher.join(event_id)
        for category in (general, vip):
            assert watcher.availability(category)["onSale"] is True
        r = http.delete(f"/api/events/{event_id}", headers=org["headers"])
        assert r.status_code == 200, r.text
        for category, seats in ((general, 10), (vip, 4)):
            seen = watcher.availability(category, lambda d: d["onSale"] is False)
            assert (seen["availableTickets"], seen["soldTickets"], seen["lockedTickets"]) == (seats, 0, 0)


def test_expiry_is_broadcast(realtime, http, event, db, database_url):
    import ray

    from actors import NAMESPACE, category_actor_name
    from actors.category import TicketCategory

    event_id, general, _ = ids(event)
    # The category's actor (started when the event was created, or anew if it retired since): one-second holds.
    short = {"hold_seconds": 1.0, "max_per_order": 10}
    actor = TicketCategory.options(name=category_actor_name(event_id, general), namespace=NAMESPACE,
                                   lifetime="detached", get_if_exists=True).remote(database_url, event_id, general, short)
    ray.get(actor.configure.remote(short))
    with Client(realtime, register(http)["token"]) as watcher, Client(realtime, register(http)["token"]) as client:
        watcher.join(event_id)
        watcher.availability(general, lambda d: d["availableTickets"] == 10)
        client.send("lock-tickets", {"eventId": event_id, "categoryId": general, "quantity": 4})
        lock = client.expect("lock-tickets-response")
        assert lock["success"] is True, lock
        watcher.availability(general, lambda d: d["lockedTickets"] == 4)
        expired = watcher.availability(general, lambda d: d["lockedTickets"] == 0)
        assert expired["availableTickets"] == 10
    assert hold_status(db, lock["lockId"]) == "expired"


def test_disconnect_releases_the_sockets_holds_and_is_broadcast(realtime, http, event, db):
    event_id, general, vip = ids(event)
    buyer = register(http)
    with Client(realtime, register(http)["token"]) as watcher:
        watcher.join(event_id)
        watcher.availability(general, lambda d: d["availableTickets"] == 10)
        # An HTTP hold of the same user is not the socket's: it survives the disconnect.
        r = http.post("/api/holds", json={"eventId": event_id, "categoryId": vip, "quantity": 1},
                      headers=buyer["headers"])
        assert r.status_code == 201, r.text
        http_hold = r.json()["lockId"]
        client = Client(realtime, buyer["token"])
        client.send("lock-tickets", {"eventId": event_id, "categoryId": general, "quantity": 5})
        lock = client.expect("lock-tickets-response")
        assert lock["success"] is True
        watcher.availability(general, lambda d: d["lockedTickets"] == 5)
        client.close()
        released = watcher.availability(general, lambda d: d["lockedTickets"] == 0)
        assert released["availableTickets"] == 10
    assert hold_status(db, lock["lockId"]) == "released"
    assert hold_status(db, http_hold) == "active"


def test_confirmed_hold_is_not_released_on_disconnect(realtime, http, event, db):
    event_id, general, _ = ids(event)
    buyer = register(http)
    with Client(realtime, register(http)["token"]) as watcher:
        watcher.join(event_id)
        client = Client(realtime, buyer["token"])
        client.send("lock-tickets", {"eventId": event_id, "categoryId": general, "quantity": 2})
        lock = client.expect("lock-tickets-response")
        r = http.post("/api/orders/with-lock", json={"eventId": event_id, "categoryId": general, "quantity": 2,
                                                     "lockId": lock["lockId"]}, headers=buyer["headers"])
        assert r.status_code == 201, r.text
        watcher.availability(general, lambda d: d["soldTickets"] == 2)
        client.close()
        # Buy one more seat so the room sees a newer snapshot: sold 3, nothing held.
        r = http.post("/api/orders", json={"eventId": event_id, "categoryId": general, "quantity": 1},
                      headers=buyer["headers"])
        assert r.status_code == 201, r.text
        after = watcher.availability(general, lambda d: d["soldTickets"] == 3)
        assert (after["availableTickets"], after["lockedTickets"]) == (7, 0)
    assert hold_status(db, lock["lockId"]) == "confirmed"


# ---- identity ----------------------------------------------------------------------------------------


def test_payload_user_id_cannot_act_for_someone_else(realtime, http, event):
    event_id, general, _ = ids(event)
    attacker, victim = register(http), register(http)
    with Client(realtime, attacker["token"]) as client:
        for spoof in (victim["id"], str(victim["id"]), True, "x"):
            client.send("lock-tickets", {"eventId": event_id, "categoryId": general, "quantity": 1,
                                         "userId": spoof})
            assert client.expect("lock-tickets-response") == {
                "success": False, "message": "Unauthorized", "statusCode": 403}
        client.send("join-event-room", {"eventId": event_id, "userId": victim["id"]})
        assert client.expect("error") == {"message": "Unauthorized", "statusCode": 403}
        client.send("unlock-tickets", {"eventId": event_id, "categoryId": general, "userId": victim["id"]})
        assert client.expect("unlock-tickets-response")["message"] == "Unauthorized"
        assert http.get("/api/holds", headers=victim["headers"]).json() == []
        assert http.get("/api/holds", headers=attacker["headers"]).json() == []
        # The caller's own id (as seed clients send it) is fine, and the hold is the token's user's.
        client.send("lock-tickets", {"eventId": event_id, "categoryId": general, "quantity": 1,
                                     "userId": attacker["id"]})
        assert client.expect("lock-tickets-response")["success"] is True
        assert [h["userId"] for h in http.get("/api/holds", headers=attacker["headers"]).json()] == [attacker["id"]]
        assert http.get("/api/holds", headers=victim["headers"]).json() == []


# ---- notices to the buyer --------------------------------------------------------------------------


def test_order_notices_reach_every_socket_of_the_buyer_only(realtime, http, event):
    event_id, general, _ = ids(event)
    buyer, other = register(http), register(http)
    with Client(realtime, buyer["token"]) as tab1, Client(realtime, buyer["token"]) as tab2, \
            Client(realtime, other["token"]) as stranger:
        r = http.post("/api/orders", json={"eventId": event_id, "categoryId": general, "quantity": 2},
                      headers=buyer["headers"])
        assert r.status_code == 201, r.text
        order_id = r.json()["id"]
        for tab in (tab1, tab2):
            done = tab.expect("order-completed")
            assert done == {"orderId": order_id, "eventId": event_id, "categoryId": general, "quantity": 2,
                            "message": "Your order has been completed successfully!"}
        stranger.send("heartbeat")
        assert stranger.next()["event"] == "heartbeat-response"

        r = http.post(f"/api/orders/{order_id}/cancel", headers=buyer["headers"])
        assert r.status_code == 201, r.text
        for tab in (tab1, tab2):
            cancelled = tab.expect("order-cancelled")
            assert cancelled["orderId"] == order_id and cancelled["quantity"] == 2
        stranger.send("heartbeat")
        assert stranger.next()["event"] == "heartbeat-response"


def test_stats_counts_open_sockets(realtime, http):
    stats_url = realtime.replace("ws://", "http://", 1) + "/stats"
    with Client(realtime, register(http)["token"]):
        stats = http.get(stats_url).json()
        assert stats["connections"] >= 1

