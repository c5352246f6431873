"""The Socket.IO endpoint with the npm `socket.io-client` v4 (tests/js, installed by `npm ci` in .ci/run),
connecting exactly as the seed's clients do: `io(URL + "/realtime", {auth: {token}, query: {userId}})`
with the library's default transports (long-polling, then the upgrade to WebSocket).

Each client is a `node tests/js/client.mjs` process printing JSON lines; waits are "until this line
arrives" with a generous bound (reaching it is a failure), never sleeps.
"""
from __future__ import annotations

import json
import queue
import re
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.helpers import create_event, register

WAIT_S = 30.0
JS = Path(__file__).resolve().parent / "js"


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None or not (JS / "node_modules" / "socket.io-client").is_dir():
        pytest.fail("needs Node and `npm ci` in tests/js (.ci/run does both)")
    return path


class NodeClient:
    def __init__(self, node: str, url: str, **config) -> None:
        self.proc = subprocess.Popen([node, str(JS / "client.mjs"), json.dumps({"url": url, **config})],
                                     cwd=JS, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put({"event": "(exit)"})

    def expect(self, where) -> dict:
        for i, line in enumerate(self.seen):
            if where(line):
                return self.seen.pop(i)
        while True:
            try:
                line = self.lines.get(timeout=WAIT_S)
            except queue.Empty:
                raise AssertionError(f"nothing matching within {WAIT_S}s; seen {self.seen}") from None
            if where(line):
                return line
            if line.get("event") == "(exit)":
                raise AssertionError(f"client exited; seen {self.seen}")
            self.seen.append(line)

    def event(self, name: str, where=lambda data: True) -> dict:
        return self.expect(lambda line: line.get("event") == name and where(line.get("data")))["data"]

    def ack(self, name: str) -> dict:
        return self.expect(lambda line: line.get("ack") == name)["data"]

    def emit(self, name: str, data: dict | None = None, ack: bool = False) -> None:
        command = {"emit": name, "ack": ack} | ({} if data is None else {"data": data})
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=WAIT_S)


def seed_client(node: str, url: str, user: dict, **config) -> NodeClient:
    """Connected as the seed's test page connects (plus a real token)."""
    client = NodeClient(node, url, auth={"token": user["token"]}, query={"userId": user["id"]}, **config)
    client.expect(lambda line: line.get("event") == "connect")
    assert client.event("connected")["userId"] == user["id"]
    return client


def test_seed_style_client_connects_over_polling_and_upgrades(node, socketio_url, http):
    user = register(http)
    client = NodeClient(node, socketio_url, auth={"token": user["token"]}, query={"userId": user["id"]})
    try:
        assert client.expect(lambda line: "open" in line)["open"] == "polling"  # the library's default
        client.expect(lambda line: line.get("event") == "connect")
        assert client.expect(lambda line: "upgrade" in line)["upgrade"] == "websocket"
        hello = client.event("connected")
        assert hello["success"] is True and hello["userId"] == user["id"] and hello["sessionId"]
        client.emit("heartbeat", ack=True)
        assert client.ack("heartbeat")["timestamp"].endswith("Z")
        assert client.event("heartbeat-response")["timestamp"].endswith("Z")
    finally:
        client.close()


def test_client_without_a_token_gets_connect_error(node, socketio_url, http):
    user = register(http)
    attempts = [
        ({"query": {"userId": user["id"]}}, "missing token!", 401),  # the seed's own handshake
        ({"auth": {"token": "fake_jwt_token_for_testing"}, "query": {"userId": user["id"]}}, "Invalid Token!", 401),
        # a valid token, but the query names someone else
        ({"auth": {"token": user["token"]}, "query": {"userId": user["id"] + 1}, "transports": ["websocket"]},
         "Unauthorized", 403),
    ]
    for config, message, status in attempts:
        client = NodeClient(node, socketio_url, **config)
        try:
            refused = client.expect(lambda line: line.get("event") in ("connect_error", "connect"))
            assert refused["event"] == "connect_error", refused
            assert (refused["message"], refused["data"]["statusCode"]) == (message, status)
        finally:
            client.close()


def test_rooms_locks_orders_and_disconnect_with_the_npm_client(node, socketio_url, http, db):
    org = register(http, "organizer")
    event = create_event(http, org, seats=10, ticketCategories=[
        {"categoryName": "General", "price": "50.00", "totalSeats": 10}])
    event_id, general = event["idEvent"], event["ticketCategories"][0]["id"]
    buyer, other_buyer, watching = register(http), register(http), register(http)
    watcher = seed_client(node, socketio_url, watching)
    holder = seed_client(node, socketio_url, buyer, transports=["websocket"])
    tab = seed_client(node, socketio_url, other_buyer)
    try:
        watcher.emit("join-event-room", {"eventId": event_id, "userId": watching["id"]})
        assert watcher.event("joined-event-room")["eventId"] == event_id
        watcher.event("availability-update", lambda d: d["categoryId"] == general and d["availableTickets"] == 10)

        holder.emit("lock-tickets", {"eventId": event_id, "categoryId": general, "quantity": 3,
                                     "userId": buyer["id"]}, ack=True)
        lock = holder.ack("lock-tickets")
        assert lock["success"] is True and lock["availableTickets"] == 7
        assert holder.event("lock-tickets-response") == lock
        watcher.event("availability-update", lambda d: d["lockedTickets"] == 3)

        # Another buyer's HTTP order: the room sees it, and only that buyer's own socket is told.
        r = http.post("/api/orders", json={"eventId": event_id, "categoryId": general, "quantity": 2},
                      headers=other_buyer["headers"])
        assert r.status_code == 201, r.text
        sold = watcher.event("availability-update", lambda d: d["soldTickets"] == 2)
        assert (sold["availableTickets"], sold["lockedTickets"]) == (5, 3)
        done = tab.event("order-completed")
        assert done["orderId"] == r.json()["id"] and done["quantity"] == 2
        for client in (watcher, holder):  # their next reply comes with no notice before it
            client.emit("heartbeat")
            client.event("heartbeat-response")
            assert not [line for line in client.seen if line.get("event") == "order-completed"]

        # The holder goes away: its hold is released and the room is told.
        holder.emit("get-my-locks")
        assert [h["lockId"] for h in holder.event("my-locks-response")["locks"]] == [lock["lockId"]]
        holder.close()
        after = watcher.event("availability-update", lambda d: d["lockedTickets"] == 0)
        assert (after["availableTickets"], after["soldTickets"]) == (8, 2)
    finally:
        for client in (watcher, holder, tab):
            client.close()
    with db.connect() as conn:
        status = conn.execute(text("SELECT status FROM holds WHERE id = :id"), {"id": lock["lockId"]}).scalar_one()
    assert status == "released"


def test_the_readme_snippet_works(node, socketio_url, http):
    """The README's socket.io-client snippet, as printed there, against this server and a real event."""
    readme = (JS.parents[1] / "README.md").read_text()
    snippet = re.search(r"```js\n(.*?)```", readme, re.S).group(1)
    assert snippet.count("http://localhost:8000") == 2 and "eventId: 1 " in snippet
    org, user = register(http, "organizer"), register(http)
    event = create_event(http, org, seats=10, ticketCategories=[
        {"categoryName": "General", "price": "50.00", "totalSeats": 10}])
    code = (f"const username = {json.dumps(user['username'])}, password = {json.dumps(user['password'])};\n"
            + snippet.replace("http://localhost:8000", socketio_url)
                     .replace("eventId: 1 ", f"eventId: {event['idEvent']} "))
    script = JS / f".readme-{uuid.uuid4().hex}.mjs"  # beside node_modules, where the import resolves
    script.write_text(code)
    proc = subprocess.Popen([node, str(script)], cwd=JS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bound = threading.Timer(WAIT_S, proc.kill)  # no line by then: the read below ends, and fails
    bound.start()
    try:
        line = proc.stdout.readline()  # the snippet logs each availability-update: categoryId available
        assert line.split() == [str(event["ticketCategories"][0]["id"]), "10"], (line, proc.stderr.read())
    finally:
        bound.cancel()
        proc.kill()
        proc.wait(timeout=WAIT_S)
        script.unlink()
