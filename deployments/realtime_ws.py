"""The plain WebSocket endpoint (ws://HOST:PORT/realtime): a thin adapter over deployments/realtime.py.

It authenticates the handshake (`?token=` or `Authorization: Bearer`), frames messages as JSON text
{"event", "data"}, and closes sockets with WebSocket close codes. Each open socket holds one
`max_ongoing_requests` slot of its replica for its whole life, so this is a Serve application of its own,
sized for thousands of sockets (serve_config.yaml). Protocol: docs/websocket.md.
"""
from __future__ import annotations

import asyncio
import contextlib

from ray import serve
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from deployments.realtime import RealtimeCore
from deployments.realtime_queue import PUSH_INTERVAL_S
from deployments.realtime_session import Session
from domain import realtime as proto
from domain.auth import token_from_header
from domain.errors import ApiError

CLOSE_TIMEOUT_S = 2.0


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=5000, graceful_shutdown_timeout_s=5)
@serve.ingress()
class Realtime:
    def __init__(self, db_url: str, data_dir: str, fanout_interval_s: float = 0.0,
                 queue_push_interval_s: float = PUSH_INTERVAL_S) -> None:
        self.core = RealtimeCore(db_url, data_dir, fanout_interval_s, queue_push_interval_s=queue_push_interval_s)

    def reconfigure(self, config: dict) -> None:
        self.core.reconfigure(config)

    def __serve_build_asgi_app__(self):
        http = self.core.http_app()

        async def app(scope, receive, send):
            # Every WebSocket under the route prefix is the realtime socket ("/realtime" or "/realtime/").
            if scope["type"] == "websocket":
                await self._socket(WebSocket(scope, receive, send))
            else:
                await http(scope, receive, send)

        return app

    async def _socket(self, websocket: WebSocket) -> None:
        try:
            token = websocket.query_params.get("token") or token_from_header(websocket.headers.get("authorization"))
            principal = self.core.authenticate(token)
        except ApiError as exc:
            await _refuse(websocket, exc)
            return
        await websocket.accept()
        session = await self.core.open(principal, websocket)
        closing = await self.core.run(session, principal, websocket.send_text, self._read(websocket, session))
        if closing is not None:  # after the clean-up: a client that stopped reading may never take it
            await _close(websocket, *closing)

    async def _read(self, websocket: WebSocket, session: Session) -> None:
        while True:
            try:
                received = await websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if received["type"] == "websocket.disconnect":
                return
            text = received.get("text")
            if text is None:
                session.send("error", {"message": "Binary messages are not supported", "statusCode": 400})
                continue
            await self.core.handle_text(session, text)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    # The client may be gone already, or not reading: then the close frame cannot be written (bounded).
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason), CLOSE_TIMEOUT_S)


async def _refuse(websocket: WebSocket, exc: ApiError) -> None:
    """Refuse the handshake: HTTP 401 with the API's error body where the server supports it (uvicorn
    behind Serve's proxy does), else a close before accept (the client sees HTTP 403)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(exc.body(), status_code=401))
    else:
        await websocket.close(proto.CLOSE_UNAUTHORIZED, str(exc.message))
