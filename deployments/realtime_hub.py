"""One WebSocket replica's sockets: event rooms, sockets by user, and a bounded outbox per socket.

A background task long-polls the broadcaster actor and fans each result out: the newest figures of
each changed category go to the sockets in that event's room, order notices to every socket of the
buyer. A socket that can take a message at once gets it in the fan-out's own step; one that cannot
(its client is not reading) gets a task of its own and queues meanwhile, so a slow client delays no one
else. Availability is coalesced per category in each outbox (a socket that is behind gets the newest
figures once, not every intermediate step); replies and notices are kept in order up to a bound, and a
socket that exceeds it, or whose send stalls, is closed.

Transport-neutral: a message is text made by the hub's `encode(event, data)` (a JSON frame for the
plain WebSocket, a Socket.IO packet for Socket.IO), and each socket's send function is injected.
Pure asyncio: the poll function and the send functions are injected (tests/unit use fakes).
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any

from domain.realtime import availability, message

log = logging.getLogger(__name__)

Key = tuple[int, int]  # (eventId, categoryId)
Stamp = tuple[int, int]  # (broadcaster generation as seen by this replica, broadcaster version)
OUTBOX_LIMIT = 256  # replies + notices waiting for one socket before it counts as a laggard
PASS_STEP = 128  # sockets brought up to date between two yields to the event loop
SEND_TIMEOUT_S = 10.0  # one send blocked this long (the client stopped reading) → close it


class Outbox:
    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self.limit = limit
        self.direct: deque[str] = deque()
        self.updates: dict[Key, str] = {}
        self.stamps: dict[Key, Stamp] = {}
        self.overflowed = False

    def put(self, text: str) -> bool:
        """Queue a reply or notice; False (and the socket is to be closed) if the bound is reached."""
        if len(self.direct) >= self.limit:
            self.overflowed = True
            return False
        self.direct.append(text)
        return True

    def put_update(self, key: Key, stamp: Stamp, text: str) -> None:
        """Queue availability figures unless this socket already has the same or newer ones."""
        if key in self.stamps and stamp <= self.stamps[key]:
            return
        self.stamps[key] = stamp
        self.updates[key] = text  # replaces a not yet sent older snapshot: newest wins

    def forget_event(self, event_id: int) -> None:
        """Left the room: drop pending figures, so a later join starts afresh."""
        for key in [k for k in self.stamps if k[0] == event_id]:
            self.stamps.pop(key, None)
            self.updates.pop(key, None)

    def take(self) -> list[str]:
        out = list(self.direct)
        self.direct.clear()
        out.extend(self.updates.values())
        self.updates.clear()
        return out


Sender = Callable[[str], Awaitable[None]]
Encoder = Callable[[str, dict], str]  # (event, data) → the text one socket is sent
TOO_SLOW = ("outbox full", "send stalled")  # why a socket is closed as a laggard
# Set by a message handler's caller: what Session.send sends meanwhile is also recorded there, so the
# reply can answer a Socket.IO acknowledgement too. Per task, so concurrent handlers do not mix.
replies: contextvars.ContextVar[list[tuple[str, dict]] | None] = contextvars.ContextVar("replies", default=None)


@dataclass(eq=False)
class Session:
    """One connected socket of an authenticated user.

    Messages are sent from the caller's own step (the fan-out loop, a message handler) while the socket
    takes them at once, which is nearly always: waking a sender task per socket instead cost 3× the CPU
    of the send itself at 5,000 sockets. A send that cannot finish at once (the client is not reading)
    is finished by a task of this socket's own, and what is queued meanwhile waits in the outbox.
    """

    id: str
    user_id: int
    encode: Encoder = message
    outbox: Outbox = field(default_factory=Outbox)
    rooms: set[int] = field(default_factory=set)
    held: set[Key] = field(default_factory=set)  # categories where this socket made holds
    address: str | None = None  # the client's address at the handshake, for the abuse limits
    sender: Sender | None = None  # None until attached: messages wait in the outbox
    draining: asyncio.Task | None = None  # finishing a send that blocked, then what queued behind it
    blocked: asyncio.Future | None = None  # that blocked send's own task (cancelled with the socket)
    send_started: float = 0.0  # monotonic time the blocked send began, 0 when none is blocked
    ended: asyncio.Future | None = None  # resolves with the reason the socket must be closed
    seen: int = -1  # the hub's figures sequence this socket was last brought up to date with

    def attach(self, sender: Sender) -> asyncio.Future:
        """Start sending through `sender`; the returned future resolves if this socket is to be closed."""
        self.sender = sender
        self.ended = asyncio.get_running_loop().create_future()
        self.flush()
        return self.ended

    def detach(self) -> None:
        self.sender = None
        for task in (self.draining, self.blocked):  # the drain may not have started to own the send yet
            if task is not None:
                task.cancel()

    def send(self, event: str, data: dict) -> bool:
        recorded = replies.get()
        if recorded is not None:
            recorded.append((event, data))
        return self.put(self.encode(event, data))

    def put(self, text: str) -> bool:
        """Queue a reply or notice and send it if the socket is free; False if the socket is a laggard."""
        accepted = self.outbox.put(text)
        self.flush()
        return accepted

    def update(self, key: Key, stamp: Stamp, text: str) -> None:
        self.outbox.put_update(key, stamp, text)
        self.flush()

    def flush(self) -> None:
        if self.sender is None or self.draining is not None or self.ended is None or self.ended.done():
            return
        if self.outbox.overflowed:
            self._end(TOO_SLOW[0])
            return
        items = self.outbox.take()
        for i, text in enumerate(items):
            try:
                rest = run_until_blocked(self.sender(text))
            except Exception as exc:  # the client went away: the reader sees the disconnect too
                self._end(f"send failed: {type(exc).__name__}")
                return
            if rest is not None:
                self.send_started = time.monotonic()
                self.blocked = rest
                self.draining = asyncio.ensure_future(self._drain(rest, items[i + 1:]))
                return

    async def _drain(self, blocked: Awaitable[None], queued: list[str]) -> None:
        try:
            await blocked
            while queued:
                for text in queued:
                    self.send_started = time.monotonic()
                    await self.sender(text)
                if self.outbox.overflowed:
                    self._end(TOO_SLOW[0])
                    return
                queued = self.outbox.take()
        except asyncio.CancelledError:  # the watchdog gave up on this socket, or it was detached
            self._end(TOO_SLOW[1])
        except Exception as exc:
            self._end(f"send failed: {type(exc).__name__}")
        finally:
            self.draining, self.blocked, self.send_started = None, None, 0.0
        self.flush()  # anything queued between the last take and now

    def stalled(self, now: float, limit_s: float) -> bool:
        return bool(self.send_started) and now - self.send_started > limit_s

    def _end(self, reason: str) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(reason)


def run_until_blocked(coro: Coroutine[Any, Any, None]) -> Awaitable[None] | None:
    """Run `coro` in the caller's step up to its first suspension (Python 3.12's eager tasks, by hand).
    None if it finished; otherwise a task that finishes it. Exceptions raised before blocking propagate.
    Until it blocks, `coro` runs as the caller's task: it must not open a timeout or task group there
    (a send through Starlette and uvicorn does neither)."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_resume(coro, waiting_on))


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], waiting_on: Any) -> Generator[Any, Any, None]:
    """Hand what a started coroutine waits on to the running task, and resume it with the outcome."""
    while True:
        try:
            outcome = yield waiting_on
        except GeneratorExit:  # the task was garbage-collected or closed: close the coroutine too
            coro.close()
            raise
        except BaseException as exc:
            try:
                waiting_on = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting_on = coro.send(outcome)
            except StopIteration:
                return


class Hub:
    def __init__(self, poll: Callable[[str | None, int], Awaitable[dict]], *, min_interval_s: float = 0.0,
                 send_timeout_s: float = SEND_TIMEOUT_S, watch_every_s: float = 1.0,
                 on_pass: Callable[[float], None] | None = None, encode: Encoder = message,
                 on_queues: Callable[[list[dict]], None] | None = None) -> None:
        self.poll = poll
        self.on_queues = on_queues  # given each poll's waiting-room figures (deployments/realtime_queue.py)
        self.encode = encode  # how this replica's sockets frame a message (serialised once for all)
        self.on_pass = on_pass  # told the wall time of each fan-out pass (metrics)
        self.send_timeout_s = send_timeout_s
        self.watch_every_s = watch_every_s
        self.min_interval_s = min_interval_s  # extra coalescing window between polls (0: none)
        self.sessions: set[Session] = set()
        self.occupied = asyncio.Event()  # set while the replica has a socket: no socket, no polling
        self.rooms: dict[int, set[Session]] = {}
        self.users: dict[int, set[Session]] = {}
        self.epoch: str | None = None
        self.version = 0
        self.generation = 0
        self.latest: dict[int, dict[Key, tuple[Stamp, str]]] = {}  # eventId → newest figures per category
        self.sequence = 0  # bumped whenever `latest` changes
        self.changed = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.fanouts = 0  # passes over the sockets
        self.fanout_seconds = 0.0  # wall time of those passes
        self.fanout_seconds_max = 0.0
        self.sockets_updated = 0
        self.laggards = 0

    # ---- membership ----
    def add(self, session: Session) -> None:
        self.sessions.add(session)
        self.occupied.set()
        self.users.setdefault(session.user_id, set()).add(session)

    def remove(self, session: Session) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            self.occupied.clear()
        _discard(self.users, session.user_id, session)
        for event_id in session.rooms:
            _discard(self.rooms, event_id, session)
        session.rooms.clear()

    def join(self, session: Session, event_id: int) -> None:
        session.rooms.add(event_id)
        self.rooms.setdefault(event_id, set()).add(session)
        session.seen = -1  # the next pass brings it the room's newest figures

    def leave(self, session: Session, event_id: int) -> None:
        session.rooms.discard(event_id)
        _discard(self.rooms, event_id, session)
        session.outbox.forget_event(event_id)

    def stamp(self, epoch: str | None, version: int) -> Stamp:
        """Order figures fetched outside the poll loop (a join) against those the loop delivers."""
        return (self.generation, version) if epoch == self.epoch else (self.generation, 0)

    # ---- the poll loop and the fan-out loop ----
    def start(self) -> None:
        if not self.tasks or any(task.done() for task in self.tasks):
            loop = asyncio.get_running_loop()
            for task in self.tasks:
                task.cancel()
            self.tasks = [loop.create_task(self._poll_loop()), loop.create_task(self._fan_out_loop()),
                          loop.create_task(self._watch())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def _watch(self) -> None:
        """Every second: a socket whose send has been stuck too long is a laggard; give up on it."""
        while True:
            await asyncio.sleep(self.watch_every_s)
            now = time.monotonic()
            for session in list(self.sessions):
                if session.stalled(now, self.send_timeout_s) and session.draining is not None:
                    session.draining.cancel()  # ends the session as a laggard

    async def _poll_loop(self) -> None:
        backoff = 0.1
        while True:
            if not self.occupied.is_set():
                # Nobody to tell: stop polling (a rush publishes hundreds of batches a second). The next
                # socket starts a fresh sync, so notices from meanwhile are not replayed to it.
                self.epoch = None
                await self.occupied.wait()
            started = time.monotonic()
            try:
                result = await self.poll(self.epoch, self.version)
            except asyncio.CancelledError:
                raise
            except Exception:  # broadcaster restarting: keep the sockets, try again
                log.warning("broadcaster poll failed; retrying in %.1fs", backoff, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            try:
                self.deliver(result)
            except Exception:  # a malformed snapshot must not stop delivery to everyone
                log.exception("delivery failed")
            if self.min_interval_s:
                await asyncio.sleep(max(0.0, self.min_interval_s - (time.monotonic() - started)))

    def deliver(self, result: dict) -> None:
        """Take one poll result: keep the newest figures per category (the fan-out loop sends them),
        and hand order notices to every socket of their user at once."""
        first_sync = self.epoch is None
        if result["epoch"] != self.epoch:
            if not first_sync:
                self.generation += 1  # the broadcaster restarted: its versions start again
            self.epoch = result["epoch"]
        self.version = result["version"]
        for figures in result["snapshots"]:
            key = (figures["eventId"], figures["categoryId"])
            text = self.encode("availability-update", availability(figures))  # serialised once for all
            self.latest.setdefault(key[0], {})[key] = ((self.generation, figures["version"]), text)
        if result["snapshots"]:
            self.sequence += 1
            self.changed.set()
        if self.on_queues is not None and result.get("queues"):
            self.on_queues(result["queues"])
        if first_sync:
            return  # notices from before this replica started are not news to its sockets
        for kind, user_id, payload in result["notices"]:
            text = self.encode(kind, payload)
            for session in list(self.users.get(user_id, ())):
                session.put(text)

    async def _fan_out_loop(self) -> None:
        """Pass over the sockets, bringing each up to the newest figures, while figures keep changing.

        Each socket gets the newest figures when the pass reaches it, not those of the moment the pass
        began: a change that arrives mid-pass reaches the rest of this pass and the start of the next,
        so no socket waits more than one pass (a round per change would make it up to two)."""
        while True:
            await self.changed.wait()
            self.changed.clear()
            started = time.perf_counter()
            try:
                for done, session in enumerate(list(self.sessions), 1):
                    self.catch_up(session)
                    if done % PASS_STEP == 0:
                        await asyncio.sleep(0)  # let the poll loop bring newer figures, and replies out
            except Exception:
                log.exception("fan-out failed")
            spent = time.perf_counter() - started
            self.fanouts += 1
            self.fanout_seconds += spent
            self.fanout_seconds_max = max(self.fanout_seconds_max, spent)
            if self.on_pass is not None:
                self.on_pass(spent)

    def catch_up(self, session: Session) -> None:
        """Queue the newest figures of the socket's rooms that it has not had, and send them if it is free."""
        if session.seen == self.sequence:
            return
        session.seen = self.sequence
        if not session.rooms:
            return
        for event_id in session.rooms:
            for key, (stamp, text) in self.latest.get(event_id, {}).items():
                session.outbox.put_update(key, stamp, text)
        self.sockets_updated += 1
        session.flush()

    def stats(self) -> dict:
        return {
            "connections": len(self.sessions),
            "users": len(self.users),
            "rooms": {str(event): len(members) for event, members in self.rooms.items()},
            "broadcasterVersion": self.version,
            "fanouts": self.fanouts,
            "fanoutSeconds": round(self.fanout_seconds, 4),
            "fanoutSecondsMax": round(self.fanout_seconds_max, 4),
            "socketsUpdated": self.sockets_updated,
            "laggardsClosed": self.laggards,
        }


def _discard(index: dict, key, session: Session) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(session)
        if not members:
            del index[key]
