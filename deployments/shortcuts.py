"""The rush routes' common case, served without FastAPI's per-request work.

FastAPI spends more CPU on a request than the work of a hold or an order: dependency solving, parameter
validation, response serialisation and its route wrappers took about 0.2 ms of the Gateway's 0.3 ms
per `POST /api/orders` (measured without Ray on 2026-12-02; BENCHMARKS.md, "Buy path"), and the
middleware around every route (error handling, CORS, exception handlers, routing) about a seventh of a
Gateway replica's CPU during hold-then-buy purchases (py-spy, 2026-12-06). A `Shortcut` serves one
APIRoute's common case itself, in front of all of that (`FastLane`), with the route's own pieces:

- a body whose content type is `application/json` and that the route's body model accepts (validated
  by the route's own body field, as FastAPI does);
- header parameters that pass the route's own validation;
- the caller proven by the same `principal` dependency (a bad token raises the same 401);
- the route's own endpoint, its answer sent as JSON with the route's status code; an exception is
  answered by the app's own handler for it (`deployments.http_errors`), as the middleware would.

Anything else (another content type, JSON that does not parse, a body or header that fails validation)
is handed to the whole app with the body it sent, so every error answer and edge case stays FastAPI's.
So is every request with an `Origin` header, which only the CORS middleware answers. The APIRoute also
stays the route's only documentation (OpenAPI) and its only code.

A Shortcut calls the APIRoute itself, so it knows nothing of what an `include_router` adds (a prefix,
dependencies, dependency overrides, body-size limits): the Gateway includes its routes with none.
"""
from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.identity import principal

JSON = "application/json"


class Shortcut:
    """An ASGI app for one APIRoute whose parameters are one JSON body, headers, the request and the
    caller (`deployments.identity.Caller`). Other routes are refused when it is built."""

    def __init__(self, route: APIRoute) -> None:
        dependant = route.dependant
        if dependant.path_params or dependant.query_params or dependant.cookie_params:
            raise ValueError(f"{route.path}: only a body, headers, the request and the caller can be shortcut")
        if len(dependant.body_params) != 1 or any(d.call is not principal for d in dependant.dependencies):
            raise ValueError(f"{route.path}: needs exactly one body and no dependency but the caller")
        if route.response_model not in (None, dict) or not inspect.iscoroutinefunction(route.endpoint):
            raise ValueError(f"{route.path}: needs an async endpoint answering a plain dict")
        self.route = route
        self.body = dependant.body_params[0]
        self.caller_names = [d.name for d in dependant.dependencies]
        self.request_name = dependant.request_param_name
        self.headers = dependant.header_params  # each read under its alias (FastAPI made `_` a `-`)
        # What an absent header gets, worked out once: FastAPI's field recomputes it on every read.
        self.required = {p.name for p in self.headers if p.field_info.is_required()}
        self.defaults = {p.name: p.default for p in self.headers
                         if p.name not in self.required and p.field_info.default_factory is None}

    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp,
                       handlers: dict[Any, Callable]) -> None:
        """Serve one request; `app` is the whole app (its middleware included), which answers what this
        does not, and `handlers` are its exception handlers."""
        scope["route"], scope["endpoint"] = self.route, self.route.endpoint  # as FastAPI sets them
        request = Request(scope, receive)
        try:
            raw = await request.body()
        except ClientDisconnect:  # gone mid-body: FastAPI answers it (400) without logging an error
            await app(scope, _disconnected, send)
            return
        except Exception as exc:
            answer = await _failure(exc, request, handlers, send)
        else:
            arguments = self._arguments(request, raw)
            if arguments is None:
                await app(scope, _replay(raw, receive), send)  # FastAPI answers as if we were not here
                return
            try:
                if self.caller_names:
                    caller = await principal(request, request.headers.get("authorization"))
                    arguments.update(dict.fromkeys(self.caller_names, caller))
                answer = await self.route.endpoint(**arguments)
                if not isinstance(answer, Response):
                    answer = JSONResponse(answer, status_code=self.route.status_code or 200)
            except Exception as exc:  # a refusal is an answer, and a failure gets the app's own answer to it
                answer = await _failure(exc, request, handlers, send)
        # What the CORS middleware adds to the answer of a request without an Origin (FastLane sends no other).
        answer.headers["Vary"] = ", ".join([*answer.headers.getlist("Vary"), "Origin"])
        await answer(scope, receive, send)

    def _arguments(self, request: Request, raw: bytes) -> dict[str, Any] | None:
        """The endpoint's arguments but the caller, or None when FastAPI must decide."""
        if request.headers.get("content-type", "").partition(";")[0].strip().lower() != JSON:
            return None
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
            return None
        body, errors = self.body.validate(document, loc=("body",))
        if errors:
            return None
        arguments: dict[str, Any] = {self.body.name: body}
        for param in self.headers:
            value = request.headers.get(param.alias)
            if value is None:
                if param.name in self.required:
                    return None
                arguments[param.name] = self.defaults[param.name] if param.name in self.defaults else param.default
                continue
            arguments[param.name], errors = param.validate(value, loc=("header", param.alias))
            if errors:
                return None
        if self.request_name:
            arguments[self.request_name] = request
        return arguments


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}


def _replay(raw: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body already read first, then passes on to the request's own."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return replay


async def _failure(exc: Exception, request: Request, handlers: dict[Any, Callable], send: Send) -> Response:
    """The answer to `exc` as the app's middleware would make it. A refusal (`ApiError`) or an HTTP error
    is answered by its handler inside the CORS middleware, so the caller sends it as any answer. Any other
    exception is answered by the handler for `Exception` outside it, as the server-error middleware does:
    sent here as is, then raised again, so that Serve logs it and counts the error, as it did before."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            break
        if cls in handlers:
            return await handlers[cls](request, exc)
    if Exception not in handlers:
        raise exc
    answer = await handlers[Exception](request, exc)
    await answer(request.scope, request.receive, send)
    raise exc


def _has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])


class FastLane:
    """The outermost layer of the Gateway's app: a rush route's request without an `Origin` header goes
    straight to its Shortcut; every other request, and whatever a Shortcut hands back, to `app`."""

    def __init__(self, app: ASGIApp, shortcuts: dict[tuple[str, str], Shortcut],
                 handlers: dict[Any, Callable]) -> None:
        self.app = app
        self.shortcuts = shortcuts
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            shortcut = self.shortcuts.get((scope["method"], scope["path"]))
            if shortcut is not None and not _has_origin(scope):
                await shortcut(scope, receive, send, self.app, self.handlers)
                return
        await self.app(scope, receive, send)


def shortcuts(routes: Iterable[Any], wanted: set[tuple[str, str]]) -> dict[tuple[str, str], Shortcut]:
    """A Shortcut for each APIRoute in `routes` whose (method, path) is in `wanted`, by (method, path).
    Every wanted route must exist and be one a Shortcut serves."""
    found = {}
    for route in routes:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods & {m for m, p in wanted if p == route.path}):
                found[(method, route.path)] = Shortcut(route)
    missing = wanted - set(found)
    if missing:
        raise ValueError(f"no such routes to shortcut: {sorted(missing)}")
    return found
