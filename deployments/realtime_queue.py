"""One realtime replica's waiting-room sockets: each socket that joined an event's queue (or asked for its
`queue-status`) keeps a copy of its entry, and is pushed its turn as the queue moves.

The queue actor publishes its figures (one small message per event, about once a second while the queue
moves) through the broadcaster; the hub's poll hands them here. From (its entry, the figures) each socket's
people ahead and wait follow locally (`place - 1 - admitted`), so 10,000 waiting sockets cost the replica
one figures message per event per change, not a call each. The actor is asked only when a copy cannot
tell: a socket's turn came (the admission time, and the expiry its pass carries) or the pre-queue was
drawn (its place); those questions go in batches, a few at a time.

A socket is pushed `queue-status` only when something it shows changed (`domain.realtime.queue_seen`:
not the queue's length), and at most once per `interval_s` (a change of status, admitted or expired, goes
at once; a change held back goes when its interval is over, with the newest figures then). Pure asyncio:
the actor call, the view and the clock are injected (tests/unit use fakes).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields

from deployments.realtime_session import Session
from domain import realtime as proto
from domain.queue import Place, QueueFigures, needs_fresh_state

log = logging.getLogger(__name__)

PUSH_INTERVAL_S = 2.0  # least time between two queue-status pushes to one socket (status changes excepted)
ASK_BATCH = 1000  # buyers per states() call to a queue actor
ASK_CONCURRENCY = 4  # such calls in flight per replica
PASS_STEP = 256  # sockets looked at between two yields to the event loop

FIGURE_FIELDS = tuple(f.name for f in fields(QueueFigures))  # what is published carries more (committedAt)
States = Callable[[int, list[int]], Awaitable[tuple[list[Place | None], QueueFigures]]]
View = Callable[[Place | None, QueueFigures, int], dict]  # (entry, figures, event id) → queue-status data


@dataclass(eq=False)
class Watch:
    """One socket's view of one event's queue."""

    session: Session
    event_id: int
    entry: Place | None
    admitted_floor: int = 0  # figures older than the newest this socket was answered with are skipped
    sent: tuple | None = None  # what it was last pushed (queue_seen)
    sent_at: float = 0.0
    due: float | None = None  # a change held back until then
    asking: bool = False  # its entry is being asked of the actor
    queue_pass: str | None = None  # the pass in its last queue-status, for lock-tickets without one


class QueueWatch:
    def __init__(self, states: States, view: View, *, interval_s: float = PUSH_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.states = states
        self.view = view
        self.interval_s = interval_s
        self.clock = clock
        self.events: dict[int, dict[Session, Watch]] = {}
        self.figures: dict[int, QueueFigures] = {}  # newest figures per watched event
        self.changed: set[int] = set()  # events whose figures arrived since the last look
        self.pending: set[Watch] = set()  # pushes held back for their interval
        self.wake = asyncio.Event()
        self.gate = asyncio.Semaphore(ASK_CONCURRENCY)
        self.tasks: set[asyncio.Task] = set()
        self.loop_task: asyncio.Task | None = None
        self.pushed = 0  # queue-status messages pushed (not replies)
        self.asked = 0  # buyers asked of queue actors

    # ---- sockets ----
    def watch(self, session: Session, event_id: int, entry: Place | None, figures: QueueFigures) -> dict:
        """The socket joined or asked: remember its entry; returns its `queue-status` (the reply)."""
        watches = self.events.setdefault(event_id, {})
        w = watches.get(session)
        if w is None:
            w = watches[session] = Watch(session, event_id, entry)
        w.entry = entry
        w.admitted_floor = max(w.admitted_floor, figures.admitted)
        newest = self.figures.get(event_id)
        if newest is None or newest.admitted < figures.admitted:
            self.figures[event_id] = figures
        state = self.view(entry, figures, event_id)
        self._sent(w, state)
        return state

    def forget(self, session: Session) -> None:
        """The socket is gone."""
        for event_id in list(self.events):
            watches = self.events[event_id]
            w = watches.pop(session, None)
            if w is not None:
                self.pending.discard(w)
            if not watches:
                del self.events[event_id]
                self.figures.pop(event_id, None)

    def pass_of(self, session: Session, event_id: int) -> str | None:
        w = self.events.get(event_id, {}).get(session)
        return w.queue_pass if w is not None else None

    def stats(self) -> dict:
        return {"queueSockets": sum(len(w) for w in self.events.values()), "queuePushes": self.pushed,
                "queueAsked": self.asked, "queuePushIntervalS": self.interval_s}

    # ---- figures from the broadcaster ----
    def deliver(self, published: list[dict]) -> None:
        """Queue figures from a poll (QueueFigures as dicts): looked at by the loop, not in the poll's step."""
        for raw in published:
            event_id = raw["event_id"]
            if event_id in self.events:
                self.figures[event_id] = QueueFigures(**{k: raw[k] for k in FIGURE_FIELDS})
                self.changed.add(event_id)
        if self.changed:
            self.wake.set()

    def start(self) -> None:
        if self.loop_task is None or self.loop_task.done():
            self.loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for task in [self.loop_task, *self.tasks]:
            if task is not None:
                task.cancel()

    async def _run(self) -> None:
        while True:
            timeout = None
            if self.pending:
                timeout = max(0.0, min(w.due for w in self.pending) - self.clock())
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except asyncio.TimeoutError:  # not the builtin one before Python 3.11
                pass
            self.wake.clear()
            try:
                await self.step()
            except Exception:  # a bad figure must not stop the pushes
                log.exception("queue pushes failed")

    async def step(self) -> None:
        """Look at every socket of the events whose figures changed, then push what is due."""
        changed, self.changed = self.changed, set()
        looked = 0
        for event_id in changed:
            figures = self.figures.get(event_id)
            watches = self.events.get(event_id)
            if figures is None or not watches:
                continue
            if not figures.enabled:  # the queue is off (switched off, event deleted or over): nothing to push
                for w in watches.values():
                    self.pending.discard(w)
                    w.due = None
                continue
            stale = []
            for w in list(watches.values()):
                if w.asking:
                    continue
                if needs_fresh_state(w.entry, figures):
                    w.asking = True
                    stale.append(w)
                else:
                    self.consider(w, figures)
                looked += 1
                if looked % PASS_STEP == 0:
                    await asyncio.sleep(0)
            for start in range(0, len(stale), ASK_BATCH):
                self._spawn(self._ask(event_id, stale[start:start + ASK_BATCH]))
        now = self.clock()
        for w in [w for w in self.pending if w.due <= now]:
            figures = self.figures.get(w.event_id)
            self.pending.discard(w)
            w.due = None
            if figures is not None and not w.asking:
                self.consider(w, figures)

    def consider(self, w: Watch, figures: QueueFigures) -> None:
        """Push `w` its state under `figures` now, later (coalesced), or not at all (nothing it sees changed)."""
        if figures.admitted < w.admitted_floor:
            return  # older than what the socket was already answered with
        state = self.view(w.entry, figures, w.event_id)
        now = self.clock()
        at = proto.queue_push_at(w.sent, w.sent_at, proto.queue_seen(state), now, self.interval_s)
        if at is None:
            self.pending.discard(w)
            w.due = None
        elif at <= now:
            self.pending.discard(w)
            w.due = None
            w.session.send("queue-status", state)
            self.pushed += 1
            self._sent(w, state)
        elif w.due is None:
            w.due = at
            self.pending.add(w)

    def _sent(self, w: Watch, state: dict) -> None:
        w.sent, w.sent_at = proto.queue_seen(state), self.clock()
        if state.get("queuePass"):
            w.queue_pass = state["queuePass"]

    # ---- asking the actor ----
    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _ask(self, event_id: int, watches: list[Watch]) -> None:
        try:
            async with self.gate:
                live = [w for w in watches if self.events.get(event_id, {}).get(w.session) is w]
                if not live:
                    return
                self.asked += len(live)
                entries, figures = await self.states(event_id, [w.session.user_id for w in live])
        except Exception:  # the actor is restarting: the next figures ask again
            log.warning("queue states of event %s unavailable", event_id, exc_info=True)
            for w in watches:
                w.asking = False
            return
        newest = self.figures.get(event_id)
        if newest is None or newest.admitted < figures.admitted:
            self.figures[event_id] = newest = figures
        for w, entry in zip(live, entries):
            w.asking = False
            if entry is not None:
                w.entry = entry
            w.admitted_floor = max(w.admitted_floor, figures.admitted)
            self.consider(w, newest)
        for w in watches:
            w.asking = False
