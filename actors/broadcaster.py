"""The broadcaster: newest availability per category, and per-user notices, for WebSocket replicas.

Category actors `publish` after each committed batch. WebSocket replicas long-poll `poll(since)` and
get every category that changed since that version, newest snapshot only (so a burst of 500 holds
costs a replica one update per category, not 500), plus the notices (order completed/cancelled)
published since. Replicas cannot be addressed one by one through Serve, hence the pull.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

import ray
from ray.exceptions import ActorDiedError

from actors import NAMESPACE

log = logging.getLogger(__name__)
BROADCASTER_NAME = "broadcaster"
NOTICE_BACKLOG = 10_000


def _changed_since(entries, since: int) -> list:
    """The entries of a version-ordered sequence whose version (first field) is newer than `since`, in
    version order: read from the newest end, so a poll costs what changed, not the whole history."""
    newer = []
    for entry in reversed(entries):
        if entry[0] <= since:
            break
        newer.append(entry)
    newer.reverse()
    return newer


class Board:
    """What the broadcaster keeps: the newest figures per category and per event's queue, and the recent
    notices, each stamped with the version at which it was published. Kept in version order (a changed
    key moves to the end), so `since` reads only what changed (a long-running system has published
    thousands of categories and keeps NOTICE_BACKLOG notices; scanning them all took 1.2 ms a poll)."""

    def __init__(self, notice_backlog: int = NOTICE_BACKLOG) -> None:
        self.version = 0
        self.snapshots: OrderedDict[tuple[int, int], tuple[int, dict]] = OrderedDict()
        self.categories: dict[int, set[int]] = {}  # per event, its categories on the board: `current` reads one event
        self.queues: OrderedDict[int, tuple[int, dict]] = OrderedDict()
        self.notices: deque[tuple[int, str, int, dict]] = deque(maxlen=notice_backlog)

    def publish(self, figures: dict, notices=()) -> int:
        self.version += 1
        key = (figures["eventId"], figures["categoryId"])
        self.snapshots[key] = (self.version, figures)
        self.snapshots.move_to_end(key)
        self.categories.setdefault(key[0], set()).add(key[1])
        for kind, user_id, payload in notices:
            self.notices.append((self.version, kind, user_id, payload))
        return self.version

    def publish_queue(self, figures: dict) -> int:
        self.version += 1
        self.queues[figures["event_id"]] = (self.version, figures)
        self.queues.move_to_end(figures["event_id"])
        return self.version

    def since(self, since: int) -> dict:
        """Every category and queue whose newest figures are newer than `since` (newest figures only), and
        the notices published after it, in order."""
        return {
            "snapshots": [{**figures, "version": version}
                          for version, figures in _changed_since(self.snapshots.values(), since)],
            "notices": [(kind, user, payload)
                        for _, kind, user, payload in _changed_since(self.notices, since)],
            "queues": [figures for _, figures in _changed_since(self.queues.values(), since)],
        }

    def current(self, event_id: int) -> list[dict]:
        """The newest figures of each category of `event_id`, oldest first (as `since` orders them)."""
        entries = sorted(self.snapshots[(event_id, c)] for c in self.categories.get(event_id, ()))
        return [{**figures, "version": version} for version, figures in entries]


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class Broadcaster:
    def __init__(self) -> None:
        self.epoch = uuid.uuid4().hex  # changes on restart, so pollers know to start over
        self.board = Board()
        self.changed: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self.changed is None:
            self.changed = asyncio.Event()
        return self.changed

    def _wake_pollers(self) -> None:
        event, self.changed = self._event(), asyncio.Event()
        event.set()

    async def publish(self, figures: dict, notices: list[tuple[str, int, dict]] = ()) -> int:
        version = self.board.publish(figures, notices)
        self._wake_pollers()
        return version

    async def publish_queue(self, figures: dict, notices: list = ()) -> int:
        """An event's waiting-room figures (`domain.queue.QueueFigures` as a dict), from its queue actor."""
        version = self.board.publish_queue(figures)
        self._wake_pollers()
        return version

    async def poll(self, epoch: str | None, since: int, timeout: float = 20.0) -> dict:
        """Wait until something newer than `since` exists (or `timeout`), then return it. A poller of
        another epoch (its first poll, or this actor restarted) is answered at once: it is out of sync."""
        if epoch != self.epoch:
            since = 0
        elif self.board.version <= since:
            try:
                await asyncio.wait_for(self._event().wait(), timeout)
            except asyncio.TimeoutError:  # not the builtin one before Python 3.11
                pass
        return {"epoch": self.epoch, "version": self.board.version, **self.board.since(since)}

    async def current(self, event_id: int) -> dict:
        """The newest snapshot of each category of `event_id` published so far, with the version
        (a poller that has fanned out a newer version keeps that one)."""
        return {"epoch": self.epoch, "snapshots": self.board.current(event_id)}


_handle = None


def broadcaster():
    """This process's handle to the broadcaster, created on first use."""
    global _handle
    if _handle is None:
        _handle = Broadcaster.options(
            name=BROADCASTER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote()
    return _handle


def forget_if_gone(exc: BaseException | None) -> None:
    """After a call to the broadcaster failed: if it is gone for good, drop this process's handle, so the
    next call starts a new broadcaster under the same name (or finds the one another process started).
    A crash restarts it on its own (max_restarts=-1); `ray.kill(..., no_restart=True)`, which the
    dashboard offers, does not, and every process kept calling the dead one until it restarted."""
    global _handle
    if isinstance(exc, ActorDiedError):
        _handle = None


class Publisher:
    """A category (or queue) actor's way to publish: one publish in flight at a time, and at most one
    per `interval` seconds; whatever batches commit meanwhile are merged into the next one (newest
    figures, every notice). The first change after a quiet spell goes out at once.

    In a rush a category commits a batch every few milliseconds, and each publish costs a Ray call to
    the broadcaster and one more from each realtime replica that polls it: about 0.9 ms of CPU on each
    side of a call on a 2-core machine (2026-12-04). Publishing after every batch took about a tenth of
    the CPU spent during the sales; 0.05 s between publishes sold 27 % faster (0.1 s: no faster still),
    and watchers still see availability twenty times a second (BENCHMARKS.md).

    Fire and forget: a lost update is repaired by the next one, and the database stays the truth.
    `committedAt` is the newest merged batch's commit time, which clients (and bench/ws_fanout.py)
    measure delivery delay from."""

    def __init__(self, send: Callable[[dict, list], Awaitable] | None = None, interval: float = 0.0) -> None:
        self.send = send or (lambda figures, notices: broadcaster().publish.remote(figures, notices))
        self.interval = interval
        self.in_flight = False
        self.timer: asyncio.TimerHandle | None = None
        self.last_sent = float("-inf")  # monotonic
        self.figures: dict | None = None
        self.notices: list = []

    def publish(self, figures: dict, notices: list) -> None:
        self.figures = {**figures, "committedAt": time.time()}
        self.notices.extend(notices)
        self._send_when_due()

    def _send_when_due(self) -> None:
        if self.in_flight or self.timer is not None or self.figures is None:
            return
        wait = self.last_sent + self.interval - time.monotonic()
        if wait > 0:
            self.timer = asyncio.get_running_loop().call_later(wait, self._send)
        else:
            self._send()

    def _send(self) -> None:
        figures, notices, self.figures, self.notices = self.figures, self.notices, None, []
        self.timer = None
        self.last_sent = time.monotonic()
        try:
            sending = asyncio.ensure_future(self.send(figures, notices))
        except Exception:  # the call could not even be made (say, Ray is shutting down): the next change repairs it
            log.warning("publishing to the broadcaster failed", exc_info=True)
            return
        self.in_flight = True
        sending.add_done_callback(self._sent)

    def _sent(self, done: asyncio.Future) -> None:
        if not done.cancelled():
            forget_if_gone(done.exception())  # a failed publish is repaired by the next one
        self.in_flight = False
        self._send_when_due()
