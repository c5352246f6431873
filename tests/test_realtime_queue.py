"""The waiting room over the realtime socket (plain /realtime and Socket.IO), through real Serve, Ray actors,
PostgreSQL and WebSockets: joining, a buyer's turn pushed as the queue moves (coalesced), the pass on
`lock-tickets`. Waits are "until this message arrives" with a generous bound, never sleeps."""
from __future__ import annotations

import asyncio
import json
import math
import time

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from tests.helpers import assert_error_containing, many_buyers, person, scalar
from tests.test_realtime import Client
from tests.test_socketio import SioClient, run
from tests.test_waiting_room import join, queued_event, soon, turn

pytestmark = pytest.mark.usefixtures("fast_users")
WAIT_S = 60.0


def token_of(buyer: dict) -> str:
    return buyer.get("token") or buyer["headers"]["Authorization"].removeprefix("Bearer ")


def client(realtime: str, buyer: dict) -> Client:
    return Client(realtime, token_of(buyer))


def unpause(http, q: dict, per_minute: int) -> None:
    r = http.patch(f"/api/events/{q['id']}/queue", json={"queuePaused": False, "admissionPerMinute": per_minute},
                   headers=q["org"]["headers"])
    assert r.status_code == 200, r.text


def holds_of(db, event_id: int) -> int:
    return scalar(db, "SELECT count(*) FROM holds WHERE event_id = :e", e=event_id)


def test_join_over_the_socket_is_the_same_place_and_answer_as_over_http(realtime, http):
    q = queued_event(http, queuePaused=True, admissionPerMinute=60)
    first, second = person(), person()
    over_http = join(http, first, q["id"])
    with client(realtime, first) as ws:
        ws.send("join-queue", {"eventId": q["id"]})
        assert ws.expect("queue-status") == over_http == turn(http, first, q["id"])  # exactly the HTTP JSON
    with client(realtime, second) as ws:
        ws.send("join-queue", {"eventId": q["id"]})
        joined = ws.expect("queue-status")
        assert (joined["status"], joined["place"], joined["peopleAhead"]) == ("waiting", 2, 1)
        ws.send("join-queue", {"eventId": q["id"]})  # again: the same place
        assert ws.expect("queue-status")["place"] == 2
        ws.send("queue-status", {"eventId": q["id"]})
        assert ws.expect("queue-status") == turn(http, second, q["id"]) == join(http, second, q["id"])


def test_queue_errors_over_the_socket_say_what_http_says(realtime, http):
    plain = http.post("/api/events", json={"eventName": "P", "eventCategory": "m", "eventDate": soon(86400)},
                      headers=person("organizer")["headers"]).json()["idEvent"]
    deleted = queued_event(http, maxShoppers=5)
    assert http.delete(f"/api/events/{deleted['id']}", headers=deleted["org"]["headers"]).status_code == 200
    with client(realtime, person()) as ws:
        for event, data, status, message in [
            ("join-queue", {"eventId": plain}, 400, f"Event {plain} has no queue: buy directly"),
            ("queue-status", {"eventId": plain}, 400, f"Event {plain} has no queue: buy directly"),
            ("join-queue", {"eventId": 999999999}, 404, "Event with ID 999999999 not found"),
            ("join-queue", {"eventId": deleted["id"]}, 404, f"Event with ID {deleted['id']} not found"),
            ("join-queue", {"eventId": "7"}, 400, "eventId must be a positive integer"),
        ]:
            ws.send(event, data)
            assert ws.expect("error") == {"message": message, "statusCode": status}
            if isinstance(data["eventId"], int) and data["eventId"] != 999999999:
                assert_error_containing(http.post(f"/api/events/{data['eventId']}/queue",
                                                  headers=person()["headers"]), status, message)
        assert ws.seen == []  # nothing else was sent


def test_pushes_follow_the_queue_and_bring_the_pass_that_works_for_an_http_hold(realtime, http, db, jwt_secret):
    q = queued_event(http, queuePaused=True, admissionPerMinute=1)
    for filler in many_buyers(db, jwt_secret, 8):
        join(http, filler, q["id"])
    buyer = person()
    with client(realtime, buyer) as ws:
        ws.send("join-queue", {"eventId": q["id"]})
        start = ws.expect("queue-status")
        assert (start["place"], start["peopleAhead"], start["paused"]) == (9, 8, True)
        unpause(http, q, 120)  # two a second
        pushed = []
        while not pushed or pushed[-1]["status"] == "waiting":
            pushed.append(ws.expect("queue-status"))
        waiting, admitted = pushed[:-1], pushed[-1]
        assert waiting, "no push while the people ahead went down"
        ahead = [s["peopleAhead"] for s in waiting]
        assert ahead == sorted(ahead, reverse=True) and ahead[-1] < 8
        assert all(s["paused"] is False and s["place"] == 9 for s in waiting)
        assert admitted["status"] == "admitted" and admitted["queuePass"] and admitted["passExpiresAt"]
        assert admitted == {**turn(http, buyer, q["id"]), "queueLength": admitted["queueLength"]}
    r = http.post("/api/holds", json={"eventId": q["id"], "categoryId": q["categories"][0], "quantity": 1},
                  headers={**buyer["headers"], "X-Queue-Pass": admitted["queuePass"]})
    assert r.status_code == 201, r.text


def test_lock_tickets_needs_the_pass_while_the_queue_is_on(realtime, http, db):
    q = queued_event(http, admissionPerMinute=600)
    buyer, other = person(), person()
    category = q["categories"][0]
    lock = {"eventId": q["id"], "categoryId": category, "quantity": 2}
    with client(realtime, buyer) as ws, client(realtime, other) as rival:
        # not joined: refused, saying where to queue, and nothing changes
        ws.send("lock-tickets", lock)
        refused = ws.expect("lock-tickets-response")
        assert refused["success"] is False and refused["statusCode"] == 403
        assert f"POST /api/events/{q['id']}/queue" in refused["message"] and "queuePass" in refused["message"]
        assert holds_of(db, q["id"]) == 0
        # admitted over HTTP: the pass in the payload works; a forged one or someone else's does not
        join(http, buyer, q["id"])
        ws.send("queue-status", {"eventId": q["id"]})  # the answer, then pushes until admitted
        state = ws.expect("queue-status", lambda s: s["status"] == "admitted")
        ws.send("lock-tickets", {**lock, "queuePass": state["queuePass"][:-3] + "abc"})
        assert ws.expect("lock-tickets-response")["statusCode"] == 403
        rival.send("lock-tickets", {**lock, "queuePass": state["queuePass"]})
        stolen = rival.expect("lock-tickets-response")
        assert (stolen["success"], stolen["statusCode"]) == (False, 403) and "another account" in stolen["message"]
        rival.send("lock-tickets", {**lock, "queuePass": 12})
        assert rival.expect("lock-tickets-response")["message"] == "queuePass must be a string"
        assert holds_of(db, q["id"]) == 0
        ws.send("lock-tickets", {**lock, "queuePass": state["queuePass"]})
        held = ws.expect("lock-tickets-response")
        assert held["success"] is True, held
        # the socket was sent the pass: a lock without one uses it (another category, one hold each)
        ws.send("lock-tickets", {**lock, "categoryId": q["categories"][1], "quantity": 1})
        assert ws.expect("lock-tickets-response")["success"] is True
    assert holds_of(db, q["id"]) == 2


def test_lock_tickets_before_the_sale_starts_is_refused_without_a_queue(realtime, http, db):
    org = person("organizer")
    e = http.post("/api/events", json={"eventName": "Later", "eventCategory": "m", "eventDate": soon(86400),
                                       "saleStartsAt": soon(3600),
                                       "ticketCategories": [{"categoryName": "G", "price": 1, "totalSeats": 5}]},
                  headers=org["headers"]).json()
    with client(realtime, person()) as ws:
        ws.send("lock-tickets", {"eventId": e["idEvent"], "categoryId": e["ticketCategories"][0]["id"], "quantity": 1})
        assert ws.expect("lock-tickets-response") == {
            "success": False, "statusCode": 403, "message": f"The sale of event {e['idEvent']} has not started yet"}
    assert holds_of(db, e["idEvent"]) == 0


def test_socketio_joins_is_pushed_its_turn_and_holds_with_it(socketio_url, http, db):
    q = queued_event(http, queuePaused=True, admissionPerMinute=1)
    buyer = person()
    over_http = join(http, person(), q["id"])

    async def scenario():
        sio = SioClient()
        await sio.connect(socketio_url, token_of(buyer))
        joined = await sio.call("join-queue", {"eventId": q["id"]})  # the acknowledgement is the answer
        assert (joined["place"], joined["peopleAhead"]) == (over_http["place"] + 1, 1)
        assert (await sio.expect("queue-status")) == joined
        refused = await sio.call("lock-tickets", {"eventId": q["id"], "categoryId": q["categories"][0],
                                                  "quantity": 1})
        assert (refused["success"], refused["statusCode"]) == (False, 403)
        assert (await sio.call("join-queue", {"eventId": 999999999})) == {
            "message": "Event with ID 999999999 not found", "statusCode": 404}
        await asyncio.to_thread(unpause, http, q, 600)
        admitted = await sio.expect("queue-status", lambda s: s["status"] == "admitted")
        held = await sio.call("lock-tickets", {"eventId": q["id"], "categoryId": q["categories"][0], "quantity": 1})
        assert held["success"] is True, held
        await sio.close()
        return admitted

    admitted = run(scenario())
    assert admitted["queuePass"] and holds_of(db, q["id"]) == 1


def test_hundreds_of_waiting_sockets_are_pushed_coalesced(realtime, http, db, jwt_secret, server):
    """Each socket gets at most one queue-status per push interval (2 s) while its people ahead go down
    every admission step, plus the one that says it was admitted. Counted per socket against the time it
    waited: a slower run only loosens the bound."""
    interval = httpx.get(f"{server}/realtime/stats", timeout=30).json()["queuePushIntervalS"]
    q = queued_event(http, queuePaused=True, admissionPerMinute=1)
    buyers = many_buyers(db, jwt_secret, 200)

    async def scenario():
        sockets = []
        for b in buyers:
            ws = await ws_connect(f"{realtime}?token={token_of(b)}", proxy=None, open_timeout=WAIT_S,
                                  max_queue=None)
            sockets.append(ws)
        for ws in sockets:
            await ws.send(json.dumps({"event": "join-queue", "data": {"eventId": q["id"]}}))

        async def replies(ws) -> dict:
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
                if msg["event"] == "queue-status":
                    return msg["data"]

        joined = await asyncio.gather(*(replies(ws) for ws in sockets))
        assert sorted(s["place"] for s in joined) == list(range(1, 201))
        started = time.monotonic()
        await asyncio.to_thread(unpause, http, q, 1200)  # twenty a second: ~10 admission steps

        async def until_admitted(ws) -> tuple[list[dict], float]:
            pushed = []
            while not pushed or pushed[-1]["status"] == "waiting":
                msg = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
                if msg["event"] == "queue-status":
                    pushed.append(msg["data"])
            return pushed, time.monotonic() - started

        outcome = await asyncio.gather(*(until_admitted(ws) for ws in sockets))
        for ws in sockets:
            await ws.close()
        return joined, outcome

    joined, outcome = asyncio.run(scenario())
    steps = scalar(db, "SELECT count(DISTINCT admitted_at) FROM queue_entries WHERE event_id = :e", e=q["id"])
    assert steps >= 5, steps  # the queue moved in many steps, each one changing everyone's people ahead
    late_waits = 0
    for state, (pushed, waited) in zip(joined, outcome):
        assert pushed[-1]["status"] == "admitted" and pushed[-1]["queuePass"]
        waiting = pushed[:-1]
        assert len(waiting) <= math.floor(waited / interval) + 1, (state["place"], len(waiting), waited)
        ahead = [s["peopleAhead"] for s in waiting]
        assert ahead == sorted(ahead, reverse=True)
        late_waits += len(waiting) > 0
    assert late_waits > 100  # those further back were told their people ahead went down on the way
