"""The realtime protocol's rules for one replica, whatever carries them: one implementation behind
the plain WebSocket endpoint (deployments/realtime_ws.py) and the Socket.IO one (deployments/realtime_sio.py),
which only authenticate, frame messages and close sockets their own way.

The token is checked by the adapter at the handshake (`authenticate`); identity never comes from a
payload. Holds go to the same category actors as HTTP holds, behind the same waiting-room check (a pass while
the event's queue is on); a socket's unconfirmed holds are released when it goes away. Availability
reaches the sockets through the broadcaster actor (see deployments/realtime_hub.py), and so do the
queues' figures, from which each waiting socket is pushed its turn (deployments/realtime_queue.py).
Protocol: docs/websocket.md.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path

from ray.exceptions import ActorDiedError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from actors.broadcaster import broadcaster, forget_if_gone
from actors.client import CategoryActors
from deployments.abuse import Action, EdgeLimits
from deployments.realtime_hub import Hub
from deployments.realtime_metrics import RealtimeMetrics
from deployments.realtime_queue import PUSH_INTERVAL_S, QueueWatch
from deployments.realtime_session import TOO_SLOW, Encoder, Sender, Session, replies
from deployments.views import hold_row_view, lock_response, unlock_response
from deployments.waiting_room import QueueDesk
from domain import events as event_rules
from domain import realtime as proto
from domain.auth import Principal, verify_token
from domain.errors import ApiError
from domain.inventory import HoldRequest, ReleaseRequest, ReleaseSessionRequest
from storage import events_store, orders_store
from storage.database import make_engine
from ticketing import settings

log = logging.getLogger(__name__)
POLL_TIMEOUT_S = 20.0
SYNC_WAIT_S = 5.0  # a new socket waits at most this long for the hub's first poll (broadcaster down)
SOCKET_CARRIER = "as queuePass in lock-tickets (join-queue joins over this socket)"
Closing = tuple[int, str]  # (close code, reason) an adapter applies in its own way


class RealtimeCore:
    def __init__(self, db_url: str, data_dir: str, fanout_interval_s: float = 0.0,
                 encode: Encoder = proto.message, queue_push_interval_s: float = PUSH_INTERVAL_S) -> None:
        self.secret = settings.jwt_secret(Path(data_dir))
        self.db_url = db_url
        self.engine = make_engine(db_url, pool_size=2)
        self.categories = CategoryActors(db_url)
        self.metrics = RealtimeMetrics()
        self.desk = QueueDesk(db_url, data_dir, engine=self.engine)
        self.queue = QueueWatch(self.desk.queues.states, self.desk.view, interval_s=queue_push_interval_s)
        self.hub = Hub(self._poll, min_interval_s=fanout_interval_s, on_pass=self.metrics.observe_pass,
                       encode=encode, on_queues=self.queue.deliver)
        self.cleanups: set[asyncio.Task] = set()
        # The abuse limits of HTTP holds and joins, for this replica's sockets (the environment's values;
        # docs/operations.md, "Abuse limits and slow clients").
        self.limits = EdgeLimits()

    def reconfigure(self, config: dict) -> None:
        # Tunables for category actors this replica may be first to create; never pushed to running ones.
        self.categories.adopt(config)
        self.limits.configure(config)

    async def _current(self, event_id: int) -> dict:
        try:
            return await broadcaster().current.remote(event_id)
        except ActorDiedError as exc:  # gone for good: ask the one that replaces it
            forget_if_gone(exc)
            return await broadcaster().current.remote(event_id)

    async def _poll(self, epoch: str | None, since: int) -> dict:
        try:
            return await broadcaster().poll.remote(epoch, since, POLL_TIMEOUT_S)
        except ActorDiedError as exc:  # gone for good: the hub's poll loop retries, on a new one
            forget_if_gone(exc)
            raise

    def stats(self) -> dict:
        return {**self.hub.stats(), **self.queue.stats()}

    def http_app(self) -> Starlette:
        """What both adapters serve besides their sockets: `GET /stats`, and a lifespan that runs the
        hub on the replica's event loop, where the sockets live."""

        @contextlib.asynccontextmanager
        async def lifespan(_app):
            self.hub.start()
            self.queue.start()
            # Pass checks over sockets see an organizer's change as soon as it is announced.
            follower = asyncio.get_running_loop().create_task(self.desk.follow_catalog(self.db_url))
            yield
            follower.cancel()
            await self.hub.stop()
            await self.queue.stop()

        async def stats(_request: Request) -> JSONResponse:
            return JSONResponse(self.stats())

        return Starlette(routes=[Route("/stats", stats)], lifespan=lifespan)

    # ---- one socket ----
    def authenticate(self, token: str | None) -> Principal:
        """The handshake's token → who the socket acts for (ApiError 401 if none or not valid)."""
        return verify_token(token, self.secret)

    async def open(self, principal: Principal, handshake=None) -> Session:
        """A new socket of `principal`: registered with the hub, `connected` queued as its first message
        once the hub is in sync, so every order notice from then on reaches it. `handshake` (the upgrade
        request: `.client`, `.headers`) gives the client's address."""
        self.hub.start()  # on the replica's event loop, where the sockets live
        self.queue.start()
        session = Session(uuid.uuid4().hex, principal.user_id, encode=self.hub.encode,
                          address=self.limits.address_of(handshake) if handshake is not None else None)
        self.hub.add(session)
        try:
            await self.hub.wait_synced(SYNC_WAIT_S)
        except BaseException:  # cancelled while waiting: `run` will never remove it
            self.hub.remove(session)
            raise
        self.metrics.set_connections(len(self.hub.sessions))
        session.send("connected", {"success": True, "sessionId": session.id, "userId": principal.user_id,
                                   "username": principal.username, "message": "Connected to realtime service"})
        return session

    async def run(self, session: Session, principal: Principal, sender: Sender,
                  reader: Awaitable[None]) -> Closing | None:
        """Send through `sender` until `reader` ends (the client went away), the client falls behind or
        its token expires; then clean up. Returns how the adapter must close the socket (None: it is gone)."""
        ended = session.attach(sender)
        reader = asyncio.ensure_future(reader)
        # The token was checked once, at the handshake; the socket lives no longer than the token.
        waits = {ended, reader}
        expiry = None
        if principal.expires_at:
            expiry = asyncio.ensure_future(asyncio.sleep(max(0.0, principal.expires_at - time.time())))
            waits.add(expiry)
        closing: Closing | None = None
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if ended.done() and ended.result() in TOO_SLOW and not reader.done():
                # The client fell behind (its outbox filled up, or a send stalled): drop it, not the others.
                self.hub.closed_laggard()
                closing = (proto.CLOSE_TOO_SLOW, "Client too slow")
            elif expiry is not None and expiry.done() and not reader.done():
                session.send("error", {"message": "Token expired", "statusCode": 401})
                closing = (proto.CLOSE_UNAUTHORIZED, "Token expired")
        finally:
            session.gone = True
            self.hub.remove(session)
            self.queue.forget(session)
            self.metrics.set_connections(len(self.hub.sessions))
            session.detach()
            reader.cancel()
            if expiry is not None:
                expiry.cancel()
            if session.held:
                cleanup = asyncio.ensure_future(self._release(session))  # not tied to this handler's fate
                self.cleanups.add(cleanup)
                cleanup.add_done_callback(self.cleanups.discard)
        return closing

    async def _release(self, session: Session) -> None:
        """The socket is gone: release its holds that were not confirmed (each change is broadcast)."""
        for event_id, category_id in list(session.held):  # a lock still finishing may add to it
            try:
                await self.categories.call(event_id, category_id, ReleaseSessionRequest(session.id))
            except Exception:
                log.warning("could not release holds of session %s in %s/%s", session.id, event_id,
                            category_id, exc_info=True)

    # ---- messages ----
    async def handle_text(self, session: Session, text: str) -> None:
        """One plain-WebSocket text frame {"event", "data"}."""
        await self._handle(session, lambda: proto.parse_message(text))

    async def handle_event(self, session: Session, event: str, data: object) -> dict | None:
        """One Socket.IO event (already decoded). Returns the reply's payload, for an acknowledgement."""
        sent: list[tuple[str, dict]] = []
        token = replies.set(sent)
        try:
            await self._handle(session, lambda: proto.client_message(event, data))
        finally:
            replies.reset(token)
        return sent[0][1] if sent else None

    async def _handle(self, session: Session, parse) -> None:
        reply_event = "error"
        try:
            msg = parse()
            reply_event = {"lock-tickets": "lock-tickets-response",
                           "unlock-tickets": "unlock-tickets-response"}.get(msg.event, "error")
            proto.check_identity(msg.data, session.user_id)
            proto.check_message_budget(session.budget, msg.event, time.monotonic())
            handler = {
                "join-event-room": self._join,
                "leave-event-room": self._leave,
                "lock-tickets": self._lock,
                "unlock-tickets": self._unlock,
                "get-my-locks": self._my_locks,
                "heartbeat": self._heartbeat,
                "join-queue": self._join_queue,
                "queue-status": self._queue_status,
            }[msg.event]
            await handler(session, msg.data)
        except proto.ProtocolError as exc:
            session.send(reply_event, _failure(reply_event, exc.message, exc.status))
        except ApiError as exc:
            session.send(reply_event, _failure(reply_event, str(exc.message), exc.status))
        except Exception:
            log.exception("realtime message failed")
            session.send(reply_event, _failure(reply_event, "Internal server error", 500))

    async def _join(self, session: Session, data: dict) -> None:
        event_id = proto.positive_id(data, "eventId")
        proto.check_may_join(session.rooms, event_id)  # before the query: a refusal costs nothing
        event = await events_store.get_event(self.engine, event_id)
        event_rules.check_visible(event_id, event is not None, bool(event and event.is_active),
                                  event.created_by if event else 0, None)
        self.hub.join(session, event_id)  # before reading figures, so no change falls in between
        session.send("joined-event-room", {"success": True, "eventId": event_id,
                                           "message": f"Joined event {event_id} room"})
        current = await self._current(event_id)
        published = {f["categoryId"]: f for f in current["snapshots"]}
        for category in event.ticket_categories:
            if not category.is_active:
                continue
            figures = published.get(category.id)
            if figures is not None:
                stamp = self.hub.stamp(current["epoch"], figures["version"])
            else:  # nothing published since the broadcaster started: the database counters
                figures = proto.db_figures(event_id, category.id, category.total_seats, category.sold_seats,
                                           category.held_seats, event.is_active)
                stamp = self.hub.stamp(None, 0)
            session.update((event_id, category.id), stamp,
                           session.encode("availability-update", proto.availability(figures)))

    async def _leave(self, session: Session, data: dict) -> None:
        event_id = proto.positive_id(data, "eventId")
        self.hub.leave(session, event_id)
        session.send("left-event-room", {"success": True, "eventId": event_id, "message": f"Left event {event_id} room"})

    async def _lock(self, session: Session, data: dict) -> None:
        event_id, category_id = proto.positive_id(data, "eventId"), proto.positive_id(data, "categoryId")
        quantity = proto.quantity(data)
        self.limits.check(Action.HOLD, None, account=session.user_id, cost=quantity, address=session.address)
        # As over HTTP: while the event's queue is on, only with this account's pass (the payload's, else
        # the one this socket was last sent for the event); without a queue, once the sale has started.
        queue_pass = proto.queue_pass(data) or self.queue.pass_of(session, event_id)
        await self.desk.check_may_shop(session.user_id, event_id, queue_pass, SOCKET_CARRIER)
        if session.gone:
            # Closed while the pass was checked (Socket.IO does not cancel a running handler): its clean-up
            # has already looked at its holds, so a hold made now would stay until it expired.
            return
        request = HoldRequest(session.user_id, quantity, session.id)
        # Noted before the call: if the socket goes away meanwhile, its clean-up still releases the hold.
        key, had = (event_id, category_id), (event_id, category_id) in session.held
        session.held.add(key)
        try:
            outcome = await self.categories.call(event_id, category_id, request)
        except Exception:  # refused before reaching the actor (no such category...): nothing to release
            if not had:
                session.held.discard(key)
            raise
        if not outcome.ok and not had:
            session.held.discard(key)
        session.send("lock-tickets-response", lock_response(outcome, event_id, category_id, quantity))

    async def _unlock(self, session: Session, data: dict) -> None:
        event_id, category_id = proto.positive_id(data, "eventId"), proto.positive_id(data, "categoryId")
        raw = proto.lock_id(data)
        try:
            hold_id = uuid.UUID(raw) if raw else None
        except ValueError:
            raise proto.ProtocolError("No tickets found to unlock", 404) from None
        outcome = await self.categories.call(event_id, category_id, ReleaseRequest(session.user_id, hold_id))
        session.send("unlock-tickets-response", unlock_response(outcome, event_id))

    async def _my_locks(self, session: Session, data: dict) -> None:
        rows = await orders_store.active_holds(self.engine, session.user_id)
        session.send("my-locks-response", {"locks": [hold_row_view(r) for r in rows]})

    async def _join_queue(self, session: Session, data: dict) -> None:
        """Join the event's queue (again: the same place), as POST /api/events/:id/queue; from then on the
        socket is pushed its turn."""
        event_id = proto.positive_id(data, "eventId")
        self.limits.check(Action.QUEUE_JOIN, None, account=session.user_id, address=session.address)
        entry, figures = await self.desk.join_entry(session.user_id, event_id)
        session.send("queue-status", self.queue.watch(session, event_id, entry, figures))

    async def _queue_status(self, session: Session, data: dict) -> None:
        """The buyer's turn, as GET /api/events/:id/queue; from then on the socket is pushed its changes."""
        event_id = proto.positive_id(data, "eventId")
        entry, figures = await self.desk.state_entry(session.user_id, event_id)
        session.send("queue-status", self.queue.watch(session, event_id, entry, figures))

    async def _heartbeat(self, session: Session, data: dict) -> None:
        session.send("heartbeat-response", {"timestamp": proto.now_iso()})


def _failure(reply_event: str, text: str, status: int) -> dict:
    if reply_event == "error":
        return {"message": text, "statusCode": status}
    return proto.refusal(text, status)

