"""One WebSocket replica's sockets: event rooms and sockets by user, kept up to date from the broadcaster.

A background task long-polls the broadcaster actor and fans each result out: the newest figures of
each changed category go to the sockets in that event's room, order notices to every socket of the
buyer. Each socket (`deployments.realtime_session.Session`) is given what is for it in the fan-out's
own step and sends it at once if it can, else queues it (coalesced) in its outbox, so a slow client
delays no one else; a watchdog gives up on a socket whose send stalls.

Transport-neutral: a message is text made by the hub's `encode(event, data)`, serialised once for all
the sockets of the replica. Pure asyncio: the poll function and the send functions are injected
(tests/unit use fakes).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from deployments.realtime_session import Encoder, Key, Session, Stamp
from domain.realtime import availability, message

log = logging.getLogger(__name__)

PASS_STEP = 128  # sockets brought up to date between two yields to the event loop
SEND_TIMEOUT_S = 10.0  # one send blocked this long (the client stopped reading) → close it


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
        # Set once a poll has answered since polling (re)started: notices after that reach the sockets.
        self.synced = asyncio.Event()
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

    def closed_laggard(self) -> None:
        """A socket of this replica was closed for falling behind (`laggardsClosed` in the stats)."""
        self.laggards += 1

    async def wait_synced(self, timeout: float) -> None:
        """Until the poll loop has its first answer (at most `timeout`: a broadcaster that is down must not
        hold connections back). The first answer's notices are old news and skipped, so a socket told it
        is connected before then could miss the notice of an order placed right after."""
        if not self.synced.is_set():
            with contextlib.suppress(asyncio.TimeoutError):  # not the builtin one before Python 3.11
                await asyncio.wait_for(self.synced.wait(), timeout)

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
                # socket starts a fresh sync, so notices from meanwhile are not replayed to it. The figures
                # kept go too: the broadcaster may restart meanwhile, and its versions, starting again, would
                # look older than them (the fresh sync starts no new generation), so they would be sent to
                # the next sockets and every real update of their categories dropped for hours.
                self.epoch = None
                self.latest.clear()
                self.synced.clear()
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
        self.synced.set()
        if not first_sync:  # notices from before this replica started are not news to its sockets
            for kind, user_id, payload in result["notices"]:
                text = self.encode(kind, payload)
                for session in list(self.users.get(user_id, ())):
                    session.put(text)
        # Last, and on its own: the next poll starts after this result's version, so a failure here (say,
        # figures from a queue actor of another version) must not cost the sockets this result's notices.
        if self.on_queues is not None and result.get("queues"):
            try:
                self.on_queues(result["queues"])
            except Exception:
                log.exception("queue figures of this poll could not be delivered")

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
