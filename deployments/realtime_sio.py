"""The Socket.IO v4 endpoint (namespace /realtime at the default path /socket.io/), as the seed spoke it:
a thin adapter of python-socketio's ASGI server over deployments/realtime.py.

It authenticates the Socket.IO connect (handshake `auth.token`, `?token=`, or `Authorization: Bearer`),
turns each event into a call of the shared handlers, answers acknowledgements with the reply's payload,
and frames what the hub sends as Socket.IO packets (serialised once per update, like the plain endpoint).
A Serve application of its own (route prefix /socket.io, which is where clients of `io(URL + "/realtime")`
connect); long-polling only with one replica, see docs/websocket.md.
"""
from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

import socketio
from engineio import packet as eio_packet
from ray import serve
from ray.serve.exceptions import RayServeException
from socketio import packet as sio_packet
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse

from deployments.realtime import RealtimeCore
from deployments.realtime_queue import PUSH_INTERVAL_S
from deployments.realtime_session import Session
from domain import realtime as proto
from domain.auth import Principal, token_from_header
from domain.errors import ApiError

log = logging.getLogger(__name__)
NAMESPACE = "/realtime"
# Packets queued in engine.io for one client before a send counts as blocked: from then on the socket's
# outbox holds (and coalesces) what is for it, and a client that stays behind is dropped as a laggard.
ENGINE_QUEUE_LIMIT = 64
MAX_PACKET_BYTES = 64 * 1024  # engine.io packets (and polling bodies) larger than this close the connection


def encode(event: str, data: dict) -> str:
    """(event, data) → one Socket.IO EVENT packet of the namespace, as engine.io sends it."""
    return sio_packet.Packet(sio_packet.EVENT, data=[event, data], namespace=NAMESPACE).encode()


def handshake_token(auth: object, environ: dict) -> str:
    """The JWT from the handshake: `auth.token`, else the `token` query parameter, else the
    `Authorization: Bearer` header (ApiError 401 when none)."""
    if isinstance(auth, dict) and auth.get("token"):
        return str(auth["token"])
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if query.get("token", [""])[0]:
        return query["token"][0]
    return token_from_header(environ.get("HTTP_AUTHORIZATION"))


def handshake_user_id(environ: dict) -> str | None:
    """Seed clients also name their user in the query (`query: {userId}`)."""
    values = parse_qs(environ.get("QUERY_STRING", "")).get("userId")
    return values[0] if values else None


def transports(polling: bool, replicas: int | None) -> list[str]:
    """Long-polling spreads one connection over many HTTP requests, which must all reach the replica
    that holds it; Serve does not route by session, so polling is offered only with one replica."""
    return ["polling", "websocket"] if polling and replicas == 1 else ["websocket"]


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=5000, graceful_shutdown_timeout_s=5)
@serve.ingress()
class RealtimeSocketIO:
    def __init__(self, db_url: str, data_dir: str, fanout_interval_s: float = 0.0, polling: bool = True,
                 queue_push_interval_s: float = PUSH_INTERVAL_S) -> None:
        self.core = RealtimeCore(db_url, data_dir, fanout_interval_s, encode=encode,
                                 queue_push_interval_s=queue_push_interval_s)
        allowed = transports(polling, _replicas())
        if polling and allowed == ["websocket"]:
            log.warning("Socket.IO long-polling is off: this deployment has more than one replica")
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            transports=allowed,
            cors_allowed_origins="*",  # like the plain endpoint: the token, not the origin, authorises
            async_handlers=False,  # one client's events are handled in order, as on the plain endpoint
            max_http_buffer_size=MAX_PACKET_BYTES,
        )
        # The engine.io WebSocket of each connection, so the hub's sends can write to it directly.
        self.websockets: dict[str, object] = {}
        self.sio.eio._async = {**self.sio.eio._async,
                               "websocket": _tracked(self.sio.eio._async["websocket"], self.websockets)}
        self.sio.on("connect", self._connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self._disconnect, namespace=NAMESPACE)
        self.sio.on("*", self._event, namespace=NAMESPACE)
        self.links: dict[str, tuple[Session, asyncio.Future]] = {}  # Socket.IO sid → session, "gone"
        self.tasks: set[asyncio.Task] = set()

    def reconfigure(self, config: dict) -> None:
        self.core.reconfigure(config)

    def __serve_build_asgi_app__(self):
        http = self.core.http_app()

        async def app(scope, receive, send):
            path = _route_path(scope)
            if scope["type"] in ("http", "websocket") and path in ("", "/"):
                await self.sio.handle_request(scope, receive, send)
            elif scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            elif scope["type"] == "http" and path != "/stats":
                await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
            else:
                await http(scope, receive, send)

        return app

    # ---- Socket.IO events of the namespace ----
    async def _connect(self, sid: str, environ: object, auth: object = None, *_rest) -> None:
        if sid in self.links:  # a client emitting an event named "connect": not a new connection
            return
        try:
            principal = self.core.authenticate(handshake_token(auth, environ))  # type: ignore[arg-type]
            proto.check_identity({"userId": handshake_user_id(environ)}, principal.user_id)
        except ApiError as exc:  # the client gets connect_error with this message and data
            raise socketio.exceptions.ConnectionRefusedError(str(exc.message), exc.body()) from None
        except proto.ProtocolError as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"statusCode": exc.status, "message": exc.message}) from None
        scope = environ.get("asgi.scope") if isinstance(environ, dict) else None
        session = await self.core.open(principal, HTTPConnection(scope) if scope else None)
        gone = asyncio.get_running_loop().create_future()
        self.links[sid] = (session, gone)
        task = asyncio.ensure_future(self._live(sid, session, principal, gone))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _disconnect(self, sid: str, *_reason) -> None:
        if self.sio.manager.is_connected(sid, NAMESPACE):
            return  # a client emitting an event named "disconnect"; a real one is under way otherwise
        link = self.links.pop(sid, None)
        if link is not None and not link[1].done():
            link[1].set_result(None)
        socket = self.sio.eio.sockets.get(self.sio.manager.eio_sid_from_sid(sid, NAMESPACE) or "")
        if socket is not None and not socket.upgraded:
            # A long-polling client that closes leaves its last GET waiting: python-engineio does not
            # answer it, so it held a connection (and python-socketio's disconnect(), which awaits it)
            # for the ping interval and timeout, 45 s. A NOOP answers it now, as engine.io's JS server does.
            socket.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))

    async def _event(self, event: str, sid: str, *args) -> dict | None:
        link = self.links.get(sid)
        if link is None:
            return None
        # A payload is one object; the seed's clients send none for get-my-locks and heartbeat.
        data = args[0] if args else None
        return await self.core.handle_event(link[0], event, data)  # returned: the acknowledgement

    # ---- one connection ----
    async def _live(self, sid: str, session: Session, principal: Principal, gone: asyncio.Future) -> None:
        # python-socketio queues its CONNECT packet when our connect handler returns, before this task
        # first runs; `connected` and everything after must follow it.
        for _ in range(100):
            if self.sio.manager.is_connected(sid, NAMESPACE) or gone.done():
                break
            await asyncio.sleep(0)
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        closing = await self.core.run(session, principal, self._sender(eio_sid), gone)
        if self.links.get(sid, (None,))[0] is session:
            # Usually `_disconnect` has dropped it; but python-socketio does not call it for a client that left
            # while its connect handler was still running, and the link would stay for good.
            del self.links[sid]
        if closing is None:
            return
        if closing[0] == proto.CLOSE_UNAUTHORIZED:
            # Token expired: leave the namespace ("io server disconnect": the client does not retry).
            await self.sio.disconnect(sid, namespace=NAMESPACE)
        else:  # too slow: drop the connection; the client reconnects and re-joins
            await self.sio.eio.disconnect(eio_sid)

    def _sender(self, eio_sid: str):
        async def send(text: str) -> None:
            socket = self.sio.eio.sockets.get(eio_sid)
            if socket is None or socket.closed:
                raise ConnectionError("Socket.IO connection closed")
            packet = eio_packet.Packet(eio_packet.MESSAGE, data=text)
            websocket = self.websockets.get(eio_sid)
            if websocket is not None and socket.upgraded and not socket.upgrading and socket.queue.empty():
                # On WebSocket with nothing of engine.io's own waiting: write in the caller's step, as the
                # plain endpoint does. Through engine.io's queue every message would wake the
                # connection's writer task, which cost ~2.6x the plain endpoint's change → visible delay.
                await websocket.send(packet.encode())
                return
            if socket.queue.qsize() >= ENGINE_QUEUE_LIMIT:
                await socket.queue.join()  # blocks: the socket's outbox takes over until the client reads
            await socket.send(packet)

        return send


def _tracked(websocket_class: type, registry: dict) -> type:
    """engine.io's ASGI WebSocket wrapper, registering each open one under its connection's sid."""

    class Tracked(websocket_class):
        async def __call__(self, environ):
            sid = self.handler.__self__.sid  # the handler is the engine.io socket's bound method
            registry[sid] = self
            try:
                return await super().__call__(environ)
            finally:
                if registry.get(sid) is self:
                    del registry[sid]

    return Tracked


def _replicas() -> int | None:
    """This deployment's fixed number of replicas (None when autoscaling or outside Serve)."""
    try:
        return serve.get_replica_context().world_size
    except RayServeException:  # not in a replica
        return None


def _route_path(scope: dict) -> str:
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path
