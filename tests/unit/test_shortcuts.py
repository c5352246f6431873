"""The rush routes' shortcuts (deployments.shortcuts) answer exactly as FastAPI does, and serve the common
case themselves. Two apps built as a Gateway replica builds its app, one with the shortcuts and one
without, over the same recording stand-in for the replica's services (no Ray, no database: this is the
HTTP adapter alone), get the same requests."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi.routing import APIRoute

from deployments.abuse import EdgeLimits
from deployments.gateway import RUSH_ROUTES, build_app, routes
from deployments.shortcuts import Shortcut, shortcuts
from domain.auth import VerifiedTokens, issue_token
from domain.errors import ApiError
from domain.limits import Limits
from ticketing import settings

SECRET = "test-secret-" + "x" * 32
TOKEN = issue_token(7, "buyer", "assistant", SECRET, 3600)


class Services:
    """Stands in for the replica's seat desk and waiting room; records what the routes hand them."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.limits = EdgeLimits(Limits(rates={}), header="none")
        self.waiting_room = self.seats = self

    async def check_may_shop(self, caller, event_id, queue_pass):
        self.calls.append(("may_shop", caller.user_id, event_id, queue_pass))

    async def hold(self, caller, event_id, category_id, quantity):
        self.calls.append(("hold", caller.user_id, event_id, category_id, quantity))
        if quantity == 9:
            raise ApiError("Only 3 tickets available", 400)
        return {"lockId": "a-lock", "eventId": event_id, "quantity": quantity, "availableTickets": 3}

    async def replay(self, caller, body, idempotency_key):
        self.calls.append(("replay", caller.user_id, body, idempotency_key))
        return None  # no earlier order with this key

    async def order(self, caller, body, idempotency_key):
        self.calls.append(("order", caller.user_id, body, idempotency_key))
        if body["quantity"] == 9:
            raise ApiError("Not enough tickets available. Only 3 tickets left", 400)
        return {"id": "1", "userId": caller.user_id, **body, "totalPrice": "10.00"}


class Client:
    """Requests straight into an ASGI app, one event loop each (httpx's ASGI transport)."""

    def __init__(self, app) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        async def send() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://gw") as c:
                return await c.request(method, path, **kwargs)

        return asyncio.run(send())

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def build(with_shortcuts: bool) -> tuple[Client, Services]:
    services = Services()
    return Client(build_app(services, VerifiedTokens(SECRET), with_shortcuts=with_shortcuts)), services


def shortcut_of(client: Client, path: str) -> Shortcut:
    return client.app.fast_lane[("POST", path)]


ORDER = {"eventId": 3, "categoryId": 4, "quantity": 2}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}

# (path, raw body, headers): the common case, and every way out of it that we know of.
CASES = [
    ("/api/orders", json.dumps(ORDER), {**AUTH, **JSON}),
    ("/api/orders", json.dumps({**ORDER, "notes": "aisle", "extra": 1}), {**AUTH, **JSON, "Idempotency-Key": "k1"}),
    ("/api/orders", json.dumps(ORDER), {**AUTH, "Content-Type": "application/json; charset=utf-8",
                                        "X-Queue-Pass": "a-pass"}),
    ("/api/orders", json.dumps({**ORDER, "quantity": 9}), {**AUTH, **JSON}),  # refused by the service
    ("/api/orders", json.dumps(ORDER), {**AUTH, **JSON, "Idempotency-Key": "k" * 256}),  # header too long
    ("/api/orders", json.dumps(ORDER), {**AUTH, **JSON, "X-Queue-Pass": "p" * 2001}),
    ("/api/orders", json.dumps({**ORDER, "quantity": 0}), {**AUTH, **JSON}),
    ("/api/orders", json.dumps({**ORDER, "quantity": "2"}), {**AUTH, **JSON}),
    ("/api/orders", json.dumps({**ORDER, "notes": "a\x00b"}), {**AUTH, **JSON}),
    ("/api/orders", json.dumps({"eventId": 3}), {**AUTH, **JSON}),
    ("/api/orders", "[1, 2]", {**AUTH, **JSON}),
    ("/api/orders", "{not json", {**AUTH, **JSON}),
    ("/api/orders", "", {**AUTH, **JSON}),
    ("/api/orders", b"\xff\xfe", {**AUTH, **JSON}),
    ("/api/orders", "[" * 100_000 + "]" * 100_000, {**AUTH, **JSON}),  # too deep for json.loads
    ("/api/orders", json.dumps(ORDER), AUTH),  # no content type
    ("/api/orders", json.dumps(ORDER), {**AUTH, "Content-Type": "text/plain"}),
    ("/api/orders", json.dumps(ORDER), {**AUTH, "Content-Type": "application/merge-patch+json"}),
    ("/api/orders", json.dumps(ORDER), JSON),  # no token
    ("/api/orders", json.dumps(ORDER), {**JSON, "Authorization": "Bearer forged"}),
    ("/api/orders", "{not json", {**JSON, "Authorization": "Bearer forged"}),
    ("/api/orders/with-lock", json.dumps({**ORDER, "lockId": "a-lock"}), {**AUTH, **JSON, "Idempotency-Key": "k2"}),
    ("/api/orders/with-lock", json.dumps({**ORDER, "lockId": 5}), {**AUTH, **JSON}),
    ("/api/holds", json.dumps({"eventId": 3, "categoryId": 4, "quantity": 1}), {**AUTH, **JSON}),
    ("/api/holds", json.dumps({"eventId": 3, "categoryId": 4, "quantity": 9}), {**AUTH, **JSON}),
    ("/api/holds", json.dumps({"eventId": 3, "categoryId": 4, "quantity": 1}), {**AUTH, **JSON, "X-Queue-Pass": "p"}),
    ("/api/holds", json.dumps({"eventId": 0, "categoryId": 4, "quantity": 1}), {**AUTH, **JSON}),
    ("/api/events/tickets/reserve", json.dumps({"eventId": 3, "categoryId": 4, "quantity": 2}), {**AUTH, **JSON}),
]


@pytest.mark.parametrize(("path", "body", "headers"), CASES)
def test_a_shortcut_answers_and_calls_the_services_as_fastapi_does(path, body, headers):
    (fast, fast_services), (plain, plain_services) = build(True), build(False)
    fast_answer = fast.post(path, content=body, headers=headers)
    plain_answer = plain.post(path, content=body, headers=headers)
    assert (fast_answer.status_code, fast_answer.content) == (plain_answer.status_code, plain_answer.content)
    assert fast_answer.headers.multi_items() == plain_answer.headers.multi_items()
    assert fast_services.calls == plain_services.calls


def test_a_buyer_gone_mid_body_is_answered_as_fastapi_does_and_reaches_no_service():
    """The body's first half, then the client is gone: FastAPI's 400, no 500 and no error logged."""
    answers = []
    for with_shortcuts in (True, False):
        client, services = build(with_shortcuts)
        messages = iter([{"type": "http.request", "body": b'{"eventId"', "more_body": True},
                         {"type": "http.disconnect"}])
        sent = []

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/api/orders", "raw_path": b"/api/orders", "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 1), "server": ("gw", 80),
                 "headers": [(b"content-type", b"application/json"), (b"authorization", AUTH["Authorization"].encode())]}
        asyncio.run(client.app(scope, receive, send))
        answers.append((sent[0]["status"], sent[1]["body"], services.calls))
    assert answers[0] == answers[1]
    assert answers[0][0] == 400 and answers[0][2] == []


def test_the_common_case_is_served_by_the_shortcut_and_the_rest_by_fastapi():
    client, services = build(True)
    handed_over = []
    route = shortcut_of(client, "/api/orders").route
    plain_handle = route.handle

    async def counting_handle(scope, receive, send):
        handed_over.append(scope["path"])
        await plain_handle(scope, receive, send)

    route.handle = counting_handle
    assert client.post("/api/orders", json=ORDER, headers=AUTH).status_code == 201
    assert handed_over == []
    assert client.post("/api/orders", content="{not json", headers={**AUTH, **JSON}).status_code == 400
    assert handed_over == ["/api/orders"]
    # A browser's request (it sends its Origin) gets the CORS middleware's headers: FastAPI serves it.
    origin = settings.cors_origins()[0]
    r = client.post("/api/orders", json=ORDER, headers={**AUTH, "Origin": origin})
    assert r.status_code == 201 and r.headers["access-control-allow-origin"] == origin
    assert handed_over == ["/api/orders", "/api/orders"]
    assert [c[0] for c in services.calls] == ["replay", "may_shop", "order"] * 2  # the bad JSON reached none


def test_a_failure_is_answered_as_the_app_answers_it():
    """An exception in a rush route gets the app's own answer to it: an actor that is away (503, worth a
    retry), a bug (500), never a trace; the same headers with the shortcut as without, and the exception
    raised on afterwards in both (so Serve logs it and counts the error)."""
    from ray.exceptions import ActorUnavailableError

    answers = []
    for with_shortcuts in (True, False):
        client, services = build(with_shortcuts)
        for failure in (ActorUnavailableError("away", b"\x00" * 16), RuntimeError("a bug")):
            async def order(caller, body, idempotency_key, failure=failure):
                raise failure

            services.order = order
            app = client.app

            async def post(raise_app_exceptions: bool) -> httpx.Response:
                transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
                async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                    return await c.post("/api/orders", json=ORDER, headers=AUTH)

            r = asyncio.run(post(False))
            answers.append((r.status_code, r.json(), r.headers.multi_items()))
            with pytest.raises(type(failure)):
                asyncio.run(post(True))
    assert answers[:2] == answers[2:]
    assert [status for status, _, _ in answers[:2]] == [503, 500]
    assert answers[1][1] == {"statusCode": 500, "message": "Internal server error", "error": "Internal Server Error"}


def test_other_methods_on_a_shortcut_path_reach_their_own_routes():
    client, services = build(True)
    # GET /api/holds is another APIRoute on the same path: the shortcut is for POST only.
    assert client.request("GET", "/api/holds").status_code == 401
    assert client.request("PUT", "/api/orders", json=ORDER, headers=AUTH).status_code == 405


def test_only_routes_a_shortcut_can_serve_are_taken_and_every_wanted_route_must_exist():
    plain = routes(None).routes
    with pytest.raises(ValueError, match="only a body"):
        shortcuts(plain, {("GET", "/api/orders/{order_id}")})
    with pytest.raises(ValueError, match="no such routes"):
        shortcuts(plain, {("POST", "/api/nowhere")})
    made = shortcuts(plain, RUSH_ROUTES)
    assert set(made) == RUSH_ROUTES
    assert all(isinstance(s, Shortcut) and isinstance(s.route, APIRoute) and s.route.path == path
               for (_, path), s in made.items())
