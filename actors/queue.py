"""One Ray actor per event with a queue: the single writer of that event's waiting room.

Joins from every replica land in one list; one loop takes them all, writes the new places in one
INSERT (group commit) and only then answers. The same loop, about once a second, draws the pre-queue
when the sale starts, expires passes whose shopping time is over (and releases those buyers' holds
through their category actors), notes which buyers have bought (they no longer count against the cap),
and admits the next places at the event's rate and cap. Every step is committed before memory changes,
and who has bought is read from the orders, so a restart reloads exactly what happened from PostgreSQL.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

import ray

from actors.broadcaster import Publisher, broadcaster
from actors.client import CategoryActors
from actors.metrics import QueueMetrics
from domain.inventory import ReleaseRequest
from domain.queue import AdmissionMeter, Place, QueueFigures, counted_shoppers, draw
from domain.vocabulary import QueueStatus
from storage import queue_store
from storage.database import make_engine
from storage.queue_store import EventSale
from ticketing.settings import publish_interval_seconds

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0
# The sale settings are read again this often even if no refresh came: an operator's change whose refresh
# failed (a 503 after the change was saved) still applies.
SALE_REREAD_SECONDS = 10.0
MAX_JOINS_PER_BATCH = 5000
# How often the holds of buyers whose turn has ended are looked for again (a release that failed, a hold
# written just after the turn ended); each is released at the end of the turn first.
RELEASE_SWEEP_SECONDS = 5.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Join(NamedTuple):
    """A buyer's join waiting to be written: who, the answer their caller awaits, and when they came."""

    user_id: int
    answer: asyncio.Future
    arrived: datetime


class OutOfStep(Exception):
    """The database is not as this actor remembers it: another instance wrote (a stale one left by a
    network split, or its successor). The transaction rolls back and the loop reloads the truth."""


class QueueClosed(Exception):
    """The event is unknown, deleted, over, or has no queue."""


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class EventQueue:
    def __init__(self, db_url: str, event_id: int) -> None:
        self.db_url = db_url
        self.event_id = event_id
        self.engine = make_engine(db_url, pool_size=1, max_overflow=1)
        self.sale: EventSale | None = None
        self.entries: dict[int, Place] = {}
        self.pre_queue: list[int] = []  # joined before the draw, in arrival order
        self.waiting: deque[int] = deque()  # with a place, in place order
        self.passes: dict[int, datetime] = {}  # admitted, pass not yet expired: when it expires
        self.checked_out: set[int] = set()  # of those, the buyers with an order from their turn
        self.checkouts_read_at = float("-inf")  # monotonic time the orders were last read for them
        self.drawn = False
        self.next_place = 1
        self.admitted = 0
        self.recent: deque[float] = deque()  # monotonic times of admissions in the last minute
        self.meter = AdmissionMeter()
        self.joins: list[Join] = []  # not written yet
        self.wakeup: asyncio.Event | None = None
        self.loop_task: asyncio.Task | None = None
        self.loaded = False
        self.load_lock: asyncio.Lock | None = None
        self.sale_due = float("-inf")  # when the sale settings are read again (time.monotonic())
        self.sweep_due = time.monotonic() + RELEASE_SWEEP_SECONDS  # when holds after turns are looked for
        self.categories = CategoryActors(db_url)
        self.publisher = Publisher(_publish_queue, publish_interval_seconds())
        self.last_published: QueueFigures | None = None
        self.metrics = QueueMetrics(event_id)

    # ---- public methods ----
    async def join(self, user_ids: list[int], arrived: list[datetime] | None = None
                   ) -> tuple[list[Place] | None, QueueFigures]:
        """Each account's place (a new one, or the one it already has), once written. None: the queue is
        closed (event unknown, deleted, over, or without a queue). `arrived`: when each buyer came to the
        caller (now, if not given): whoever came before the sale's start is in its draw."""
        await self._ensure_running()
        if not self._open():
            return None, self.figures_now()
        futures = []
        now = _now()
        for user_id, came in zip(user_ids, arrived or [now] * len(user_ids)):
            if user_id in self.entries:
                futures.append(None)
                continue
            future = asyncio.get_running_loop().create_future()
            self.joins.append(Join(user_id, future, came))
            futures.append(future)
        if any(futures):
            self.wakeup.set()
            await asyncio.gather(*(f for f in futures if f is not None))
        if any(user_id not in self.entries for user_id in user_ids):
            return None, self.figures_now()  # closed while they waited
        return [self.entries[user_id] for user_id in user_ids], self.figures_now()

    async def state(self, user_id: int) -> tuple[Place | None, QueueFigures]:
        await self._ensure_running()
        return self.entries.get(user_id), self.figures_now()

    async def states(self, user_ids: list[int]) -> tuple[list[Place | None], QueueFigures]:
        """Many buyers' entries at once (a realtime replica whose sockets' turn came, or whose pre-queue
        was drawn), with the figures they go with."""
        await self._ensure_running()
        return [self.entries.get(user_id) for user_id in user_ids], self.figures_now()

    async def figures(self) -> QueueFigures:
        await self._ensure_running()
        return self.figures_now()

    async def refresh(self) -> QueueFigures:
        """Re-read the sale settings after an organizer or operator changed them (applies at once)."""
        await self._ensure_running()
        await self._read_sale()
        self.wakeup.set()
        return self.figures_now()

    async def _read_sale(self) -> None:
        async with self.engine.connect() as conn:
            self.sale = await queue_store.event_sale(conn, self.event_id)
        self.sale_due = time.monotonic() + SALE_REREAD_SECONDS

    # ---- state ----
    def _open(self) -> bool:
        sale = self.sale
        return (sale is not None and sale.active and sale.settings.queue_enabled
                and sale.event_date > _now())

    def figures_now(self) -> QueueFigures:
        settings = self.sale.settings if self.sale else None
        cutoff = time.monotonic() - 60.0
        while self.recent and self.recent[0] < cutoff:
            self.recent.popleft()
        return QueueFigures(
            event_id=self.event_id,
            enabled=self._open(),
            drawn=self.drawn,
            paused=bool(settings and settings.queue_paused),
            sale_starts_at=settings.sale_starts_at if settings else None,
            pre_queue=len(self.pre_queue),
            waiting=len(self.waiting),
            admitted=self.admitted,
            shopping=counted_shoppers(self.passes, self.checked_out),
            admitted_last_minute=len(self.recent),
            admission_per_minute=settings.admission_per_minute if settings else None,
            max_shoppers=settings.max_shoppers if settings else None,
        )

    async def _ensure_running(self) -> None:
        if self.loop_task is None:
            self.wakeup = asyncio.Event()
            self.load_lock = asyncio.Lock()
            self.loop_task = asyncio.get_running_loop().create_task(self._run())
        if not self.loaded:
            await self._load_once()

    async def _load_once(self) -> None:
        async with self.load_lock:
            if not self.loaded:
                await self._load()
                self.loaded = True

    async def _load(self) -> None:
        """Everything from PostgreSQL: after a start, a restart, or a failed step. A read that fails
        changes nothing here (the loop does not step until a load has succeeded)."""
        async with self.engine.connect() as conn:
            sale = await queue_store.event_sale(conn, self.event_id)
            drawn_at, places = await queue_store.load_places(conn, self.event_id)
        self.sale, self.sale_due = sale, time.monotonic() + SALE_REREAD_SECONDS
        self.drawn = drawn_at is not None
        self.entries = {p.user_id: p for p in places}
        self.pre_queue = [p.user_id for p in places if p.place is None]
        self.waiting = deque(p.user_id for p in places if p.place is not None and p.status is QueueStatus.WAITING)
        self.passes = {p.user_id: p.pass_expires_at for p in places
                       if p.status is QueueStatus.ADMITTED and p.pass_expires_at is not None}
        self.checked_out = set()
        self.checkouts_read_at = float("-inf")
        self.admitted = sum(1 for p in places if p.status is not QueueStatus.WAITING)
        self.next_place = max((p.place for p in places if p.place is not None), default=0) + 1
        log.info("queue of event %s loaded: %s", self.event_id, self.figures_now())

    # ---- the loop ----
    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.wakeup.wait(), TICK_SECONDS)
            except asyncio.TimeoutError:  # not the builtin one before Python 3.11
                pass
            self.wakeup.clear()
            try:
                # Never a step on a state that failed to load: a draw then, say, would draw an empty
                # pre-queue for good, and nobody in it would ever be admitted.
                await self._load_once()
                await self._step()
            except Exception:  # never let the loop die: reload the truth and carry on
                log.exception("queue step of event %s failed; reloading", self.event_id)
                joins, self.joins = self.joins, []
                self.loaded = False
                try:
                    await self._load_once()
                except Exception:  # noqa: BLE001 - the database is away: answer and retry next tick
                    log.exception("reload of queue %s failed", self.event_id)
                for join in joins:
                    if not join.answer.done():
                        if join.user_id in self.entries:
                            join.answer.set_result(None)
                        else:
                            join.answer.set_exception(RuntimeError("queue unavailable, please retry"))
            self._publish()

    async def _step(self) -> None:
        if time.monotonic() >= self.sale_due:
            await self._read_sale()
        now = _now()
        if self._open() and not self.drawn and self.sale.settings.started(now):
            # Whoever came before the start is in the draw, written or not (a write under way, a backlog);
            # whoever comes from the start on queues behind the pre-queue.
            if (starts := self.sale.settings.sale_starts_at) is not None:
                await self._take_joins(arrived_before=starts)
            await self._draw(now)
        await self._take_joins()
        if not self._open():
            return
        await self._expire(now)
        await self._note_checkouts()
        if self.drawn:
            await self._admit(now)

    async def _take_joins(self, arrived_before: datetime | None = None) -> None:
        """Write waiting joins: the next batch of them, or every one that arrived before `arrived_before`."""
        if arrived_before is None:
            batch, self.joins = self.joins[:MAX_JOINS_PER_BATCH], self.joins[MAX_JOINS_PER_BATCH:]
        else:
            batch = [join for join in self.joins if join.arrived < arrived_before]
            self.joins = [join for join in self.joins if join.arrived >= arrived_before]
        if self.joins:
            self.wakeup.set()
        if not batch:
            return
        if not self._open():
            for join in batch:
                join.answer.set_result(None)
            return
        now = _now()
        new: dict[int, int | None] = {}
        next_place = self.next_place
        for join in batch:
            if join.user_id not in self.entries and join.user_id not in new:
                new[join.user_id] = next_place if self.drawn else None
                if self.drawn:
                    next_place += 1
        if new:
            try:
                async with self.engine.begin() as conn:
                    inserted = await queue_store.add_places(conn, self.event_id, list(new.items()), now)
                if len(inserted) != len(new):
                    raise OutOfStep("queue entries written by another writer")
            except BaseException:
                self.joins[:0] = batch  # back in line: the loop answers them once it has reloaded the truth
                raise
            for user_id, place in new.items():
                self.entries[user_id] = Place(user_id, place, QueueStatus.WAITING)
                (self.waiting.append if place is not None else self.pre_queue.append)(user_id)
            self.next_place = next_place
        for join in batch:
            if not join.answer.done():
                join.answer.set_result(None)

    async def _draw(self, now: datetime) -> None:
        """The sale starts: the pre-queue in a uniformly random order, places 1..n."""
        order = draw(self.pre_queue)
        first = self.next_place  # 1: nobody has a place before the draw
        async with self.engine.begin() as conn:
            await queue_store.record_draw(conn, self.event_id, order, first, now)
        for index, user_id in enumerate(order):
            self.entries[user_id] = Place(user_id, first + index, QueueStatus.WAITING)
        self.waiting.extend(order)
        self.next_place = first + len(order)
        self.pre_queue = []
        self.drawn = True
        log.info("queue of event %s drawn: %d places", self.event_id, len(order))

    async def _expire(self, now: datetime) -> None:
        over = [user_id for user_id, expires_at in self.passes.items() if expires_at <= now]
        if time.monotonic() >= self.sweep_due:
            self.sweep_due = time.monotonic() + RELEASE_SWEEP_SECONDS
            async with self.engine.connect() as conn:
                left = await queue_store.holds_after_turns(conn, self.event_id)
            await self._release(left)
        if not over:
            return
        async with self.engine.begin() as conn:
            if await queue_store.expire(conn, self.event_id, over, now) != len(over):
                raise OutOfStep("turns ended or moved by another writer")
            holds = await queue_store.active_holds_of(conn, self.event_id, over)
        for user_id in over:
            del self.passes[user_id]
            self.checked_out.discard(user_id)
            entry = self.entries[user_id]
            self.entries[user_id] = Place(user_id, entry.place, QueueStatus.EXPIRED, entry.admitted_at,
                                          entry.pass_expires_at)
        await self._release(holds)

    async def _release(self, holds: list[tuple[int, int]]) -> None:
        """The shopping time is over: these (category, user) holds go back on sale. One that fails is
        found again by the next sweep."""
        await asyncio.gather(*(self.categories.call(self.event_id, category_id, ReleaseRequest(user_id))
                               for category_id, user_id in holds), return_exceptions=True)

    async def _note_checkouts(self) -> None:
        """Buyers with a pass and an order from their turn free their place under the cap; one who cancels
        it takes the place again. Read from the orders (the category actors write them), so a restarted
        queue knows it too; once a tick, not at every batch of joins."""
        if not self.passes or time.monotonic() - self.checkouts_read_at < TICK_SECONDS:
            return
        self.checkouts_read_at = time.monotonic()
        async with self.engine.connect() as conn:
            self.checked_out = await queue_store.ordered_during_turn(conn, self.event_id, list(self.passes))

    async def _admit(self, now: datetime) -> None:
        settings = self.sale.settings
        shopping = counted_shoppers(self.passes, self.checked_out)
        count = self.meter.due(time.monotonic(), len(self.waiting), shopping,
                               settings.admission_per_minute, settings.max_shoppers, settings.queue_paused)
        if count <= 0:
            return
        chosen = [self.waiting[i] for i in range(count)]
        expires_at = now + timedelta(minutes=settings.shopping_minutes)
        async with self.engine.begin() as conn:
            if await queue_store.admit(conn, self.event_id, chosen, now, expires_at) != count:
                raise OutOfStep("buyers admitted by another writer")
        self.meter.spend(count, settings.admission_per_minute)
        stamp = time.monotonic()
        for user_id in chosen:
            self.waiting.popleft()
            entry = self.entries[user_id]
            self.entries[user_id] = Place(user_id, entry.place, QueueStatus.ADMITTED, now, expires_at)
            self.passes[user_id] = expires_at
            self.recent.append(stamp)
        self.admitted += count
        self.metrics.count_admissions(count)

    def _publish(self) -> None:
        figures = self.figures_now()
        if figures != self.last_published:
            self.last_published = figures
            self.publisher.publish(asdict(figures), [])
            self.metrics.observe(figures)


def _publish_queue(figures: dict, notices: list):
    """Queue figures to the broadcaster (the realtime replicas push each socket its own position)."""
    return broadcaster().publish_queue.remote(figures)
