"""One Ray actor per ticket category: the single writer of that category's seats.

Requests from every replica land in one queue. A single loop takes everything that waits, decides it
in arrival order against the in-memory inventory (domain.inventory), writes the whole batch to
PostgreSQL in one transaction (group commit) and only then answers. A restart re-runs __init__, which
calls the actor itself to reload the inventory from PostgreSQL, where expired holds are expired at once.

When the event has a per-account ticket limit, the batch's buyers' counts across the whole event are
locked first and the batch is decided and written in that same transaction (`_decide_and_write`), so
category actors of one event that share a buyer take turns on that buyer.
"""
from __future__ import annotations

import asyncio
import logging
import time
import warnings
from datetime import datetime, timezone

import ray
from sqlalchemy.exc import DBAPIError, IntegrityError

from actors import metrics
from actors.broadcaster import Publisher, broadcaster, forget_if_gone
from domain.inventory import (
    Allowance,
    Answers,
    CategoryInventory,
    Changes,
    Outcome,
    Refusal,
    RefusalLease,
    Request,
    idle_exit_after,
    may_free_seats,
    refuse,
)
from domain.realtime import order_notices
from storage.database import make_engine
from storage.inventory_store import (
    CategoryMissing,
    StaleWrite,
    find_written_batch,
    load_category,
    lock_buyers,
    rehearse_writes,
    write_batch,
    write_changes,
)
from ticketing import settings

log = logging.getLogger(__name__)
MAX_BATCH = 512
IDLE_DISCONNECT_SECONDS = 10.0
BROADCASTER_WAIT_S = 10.0  # the warm-up waits at most this long for the broadcaster to start


def _now() -> datetime:
    return datetime.now(timezone.utc)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class TicketCategory:
    def __init__(self, db_url: str, event_id: int, category_id: int, tunables: dict) -> None:
        self.event_id = event_id
        self.category_id = category_id
        self.tunables = dict(tunables)
        # No pre-ping: a dead connection fails its batch, which is retried one by one after a reload on a
        # new connection (`_process`), so the round trip a ping costs every batch buys nothing here.
        self.engine = make_engine(db_url, pool_size=1, max_overflow=0, pre_ping=False,
                                  name=connection_name(event_id, category_id))
        self.inventory: CategoryInventory | None = None
        self.queue: list[tuple[Request, asyncio.Future]] = []
        self.wakeup: asyncio.Event | None = None
        self.loop_task: asyncio.Task | None = None
        self.load_lock: asyncio.Lock | None = None
        self.missing = False
        # Settings given at creation are authoritative. After a restart Ray replays the creation
        # arguments, which may be stale: the next caller's settings (serve_config user_config) win.
        is_restart = restarted()
        self.configured = not is_restart
        self.loaded_once = False
        self.metrics = metrics.CategoryMetrics(event_id, category_id)
        self.idle_exit_s = settings.actor_idle_exit_seconds()
        self.closed_exit_s = settings.closed_actor_exit_seconds()
        self.last_activity = time.monotonic()
        self.retired = False
        self.publisher = Publisher(interval=settings.publish_interval_seconds())
        self.batches_retried = 0  # batches whose transaction failed and were retried one by one
        self.writing: tuple[list[Outcome], Changes] | None = None  # the batch being written, decided
        # Refusal leases (domain.inventory.RefusalLease): the one callers get with their answers now, and
        # when the last granted runs out. A predecessor of this actor may have granted some that still run,
        # and creation settings may differ from its: hold back the first batch until they would be over.
        self.lease_seconds = settings.refusal_lease_seconds()
        self.lease: RefusalLease | None = None
        self.leases_end = time.monotonic() + self.lease_seconds
        self.hold_back = True
        if is_restart:
            # Load now, not at the next call: nobody may call for a while, and the holds that ran out meanwhile
            # must expire on time (they count against their buyers' ticket limit in the event's other categories).
            ray.get_runtime_context().current_actor.figures.remote()

    # ---- public methods ----
    async def submit(self, requests: list[Request], tunables: dict | None = None) -> Answers | None:
        """Decide `requests` (in this order) and answer once the decisions are durable: one Outcome
        per request, granted or refused with a reason (the edge turns it into HTTP or a socket message),
        and the refusal lease the caller may take, if any. None means this actor has retired without
        deciding anything: ask its successor.

        `tunables` are the caller's hold duration and per-order maximum; they are adopted only by an
        actor that restarted and has not been configured since."""
        if self.retired:
            return None
        arrived = time.perf_counter()
        if tunables is not None and not self.configured:
            await self.configure(tunables)
        await self._ensure_running()
        if self.missing:
            return Answers([refuse(Refusal.CATEGORY_NOT_FOUND) for _ in requests])
        loop = asyncio.get_running_loop()
        futures = []
        for request in requests:
            future = loop.create_future()
            self.queue.append((request, future))
            futures.append(future)
        self.wakeup.set()
        outcomes = list(await asyncio.gather(*futures))
        self.metrics.observe_call(time.perf_counter() - arrived)
        # The lease of the latest batch: granted when this call's requests were decided or later, so after
        # this call was sent, which is when the caller starts counting it (see RefusalLease).
        return Answers(outcomes, self.lease)

    async def figures(self) -> dict:
        if self.retired:
            return {"eventId": self.event_id, "categoryId": self.category_id, "retired": True}
        await self._ensure_running()
        if self.missing or self.inventory is None:
            return {"eventId": self.event_id, "categoryId": self.category_id, "missing": True}
        return self.inventory.figures()

    async def configure(self, tunables: dict) -> None:
        """New hold duration / per-order maximum (serve_config.yaml user_config); applies to new holds."""
        old_max = int(self.tunables["max_per_order"])
        self.tunables.update(tunables)
        self.configured = True
        if int(self.tunables["max_per_order"]) != old_max:
            # Leases granted under the old maximum must run out first, even if the inventory is gone (a failed
            # batch): the reload would decide under the new one while they still answer.
            self.hold_back = True
            self.lease = None
        if self.inventory:
            self.inventory.hold_seconds = float(self.tunables["hold_seconds"])
            self.inventory.max_per_order = int(self.tunables["max_per_order"])

    async def refresh(self) -> dict:
        """Re-read event and category details (name, date, active) after the organizer changed them."""
        if self.retired:  # nothing of this actor will sell again; its successor loads the new details
            return {"retired": True}
        await self._ensure_running()
        done = asyncio.get_running_loop().create_future()
        self.queue.append((_Refresh(), done))
        self.wakeup.set()
        return await done

    # ---- the loop ----
    async def _ensure_running(self) -> None:
        self.last_activity = time.monotonic()
        if self.loop_task is None:
            self.wakeup = asyncio.Event()
            self.load_lock = asyncio.Lock()
            self.loop_task = asyncio.get_running_loop().create_task(self._run())
        if self.loaded_once:
            return
        # Only the first load happens here. Every later reload is done by the loop itself, between
        # batches: a reload racing a batch that is being written would drop that batch's decisions.
        async with self.load_lock:
            if not self.loaded_once:
                await self._load()
                await self._rehearse()
                self.loaded_once = True
                self.wakeup.set()  # let the loop expire holds that ran out while no actor was up

    async def _load(self) -> None:
        async def read():
            async with self.engine.connect() as conn:
                return await load_category(conn, self.event_id, self.category_id)

        try:
            try:
                info, holds, orders, _ = await read()
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                # The connection had died (nothing pings it, see __init__); the pool has dropped it.
                info, holds, orders, _ = await read()
        except CategoryMissing:
            self.missing = True
            return
        self.inventory = CategoryInventory(
            info,
            holds,
            orders,
            hold_seconds=float(self.tunables["hold_seconds"]),
            max_per_order=int(self.tunables["max_per_order"]),
        )
        log.info("category %s loaded: %s", self.category_id, self.inventory.figures())

    async def _rehearse(self) -> None:
        """Before the first decision: compile the write statements and call the broadcaster once, so the first
        buyer of a category its organizer just made pays no more than the next ones (the warm-up pays).
        The call matters on a fresh cluster: the broadcaster's process starts on its first call, and its
        start-up (about 1.4 s of CPU on a 2-core machine, 2026-12-02) would otherwise land in the rush."""
        if self.inventory is None:
            return
        try:
            async with self.engine.connect() as conn:
                await rehearse_writes(conn, self.inventory.info, _now())
            await asyncio.wait_for(broadcaster().current.remote(self.event_id), BROADCASTER_WAIT_S)
        except Exception as exc:  # an optimisation only: the first batch then pays for it, as before
            forget_if_gone(exc)
            log.warning("rehearsing the writes of category %s failed", self.category_id, exc_info=True)

    async def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            timeout = IDLE_DISCONNECT_SECONDS
            if self.inventory is not None and (due := self.inventory.next_expiry()) is not None:
                timeout = min(timeout, max(0.0, (due - _now()).total_seconds()) + 0.01)
            elif self.inventory is None and self.loaded_once and not self.missing:
                timeout = 1.0  # a batch failed: reload soon even if no request comes, so holds still expire
            if (exit_after := self._idle_exit_after()) is not None:
                # wake when it may retire, not at the next idle tick (at least 0.5 s: never a busy loop)
                timeout = min(timeout, max(0.5, self.last_activity + exit_after - time.monotonic()))
            try:
                await asyncio.wait_for(self.wakeup.wait(), timeout)
            except asyncio.TimeoutError:  # not the builtin one before Python 3.11
                if not self.queue and time.monotonic() - idle_since >= IDLE_DISCONNECT_SECONDS:
                    # An idle category gives its connection back, so thousands of categories do not
                    # exhaust PostgreSQL's connection limit; the next batch reconnects.
                    await self.engine.dispose()
                    idle_since = time.monotonic()
                if self._may_retire():
                    self._retire()
                    return
            else:
                idle_since = time.monotonic()
            self.wakeup.clear()
            batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
            if self.queue:
                self.wakeup.set()
            try:
                await self._process(batch)
            except Exception:  # never let the loop die: answer the batch and carry on
                log.exception("batch failed")
                self.inventory = None
                self.lease = None
                for _, future in batch:
                    if not future.done():
                        future.set_result(refuse(Refusal.UNAVAILABLE))

    async def _process(self, batch: list[tuple[Request, asyncio.Future]]) -> None:
        if not batch and self.inventory is None and not self.loaded_once:
            return  # a timer tick before the first load: nothing can expire
        if self.inventory is None:
            await self._load()
            if self.inventory is None:
                for _, future in batch:
                    future.set_result(refuse(Refusal.CATEGORY_NOT_FOUND))
                return
        if self.hold_back or any(isinstance(r, _Refresh) or may_free_seats(r) for r, _ in batch):
            await self._leases_run_out()
        refreshes = [(r, f) for r, f in batch if isinstance(r, _Refresh)]
        batch = [(r, f) for r, f in batch if not isinstance(r, _Refresh)]
        if refreshes:
            await self._load()  # every earlier decision is committed, so the database is complete
            for _, future in refreshes:
                future.set_result(self.inventory.figures() if self.inventory else {"missing": True})
            if self.inventory is not None:  # watchers learn at once that a deleted event is off sale
                self.publisher.publish(self.inventory.figures(), [])
        started = time.perf_counter()
        now = _now()
        try:
            outcomes, changes = await self._decide_and_write([request for request, _ in batch], now)
        except (DBAPIError, StaleWrite) as exc:
            if (written := await self._written_anyway(exc, now)) is not None:
                outcomes, changes = written
                self._grant_lease(now)
            else:
                log.warning("batch of %d failed (%s); retrying one by one", len(batch), type(exc).__name__)
                self.batches_retried += 1
                self.lease = None
                outcomes = await self._one_by_one(batch)
                changes = Changes()  # already published per request
        else:
            self._grant_lease(now)
        for (request, future), outcome in zip(batch, outcomes):
            if not future.done():
                future.set_result(outcome)
        self.metrics.observe_batch(
            [(r, o) for (r, _), o in zip(batch, outcomes)], time.perf_counter() - started, self.inventory.figures()
        )
        if changes:
            self._publish(changes)

    async def _leases_run_out(self) -> None:
        """Wait until no caller may still answer from a lease granted earlier (at most one lease long),
        granting none meanwhile: the batch about to be decided may free seats or change the rules."""
        self.lease = None
        if (wait := self.leases_end - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        self.hold_back = False

    def _grant_lease(self, now: datetime) -> None:
        self.lease = self.inventory.refusal_lease(now, self.lease_seconds)  # None when leases are off (0 s)
        if self.lease is not None:
            self.leases_end = max(self.leases_end, time.monotonic() + self.lease.seconds)

    async def _decide_and_write(self, requests: list[Request], now: datetime) -> tuple[list[Outcome], Changes]:
        """Decide `requests` in arrival order and make the decisions durable.

        An event without a ticket limit takes the short path: decide in memory, then write in one
        transaction (nothing more is read). With a limit, one transaction locks the counts of every buyer
        the batch may touch (across all the event's categories) and re-reads the limit, the batch is
        decided against what each buyer may still take, written, and committed: a buyer's seats in other
        categories cannot change in between, because their actors wait for the same locks.

        An actor that does not know of a limit (set without a refresh) takes the short path, and the
        database's guard (`ticket_limit_per_account`) refuses a write past it: the batch fails, and the
        one-by-one retry reloads the category, limit included."""
        inventory = self.inventory
        self.writing = None
        buyers = inventory.buyers_touched(requests, now) if inventory.info.ticket_limit is not None else set()
        if not buyers:
            inventory.expire_due(now)
            outcomes = [inventory.apply(request, now) for request in requests]
            changes = inventory.take_changes()
            if changes:
                self.writing = (outcomes, changes)
                await write_batch(self.engine, inventory.info, changes, now)
                self.writing = None
                inventory.committed(changes)
            return outcomes, changes
        async with self.engine.begin() as conn:
            limit, tickets = await lock_buyers(conn, self.event_id, buyers)
            inventory.info.ticket_limit = limit  # the organizer may change it during the sale
            inventory.allow(None if limit is None else Allowance(limit, tickets))
            inventory.expire_due(now)
            outcomes = [inventory.apply(request, now) for request in requests]
            changes = inventory.take_changes()
            if changes:
                self.writing = (outcomes, changes)
                await write_changes(conn, inventory.info, changes, now)
        self.writing = None  # committed
        inventory.committed(changes)
        return outcomes, changes

    async def _written_anyway(self, exc: Exception, now: datetime) -> tuple[list[Outcome], Changes] | None:
        """The batch's decisions and changes, when its write failed only because the connection broke (so
        its outcome is unknown here) and the database has the batch all the same: then they stand and are
        answered as decided. Deciding them again would sell twice (a purchase) or refuse what was granted
        (a hold, a confirmation). If the database cannot even be asked, the loop answers the batch 503."""
        written, self.writing = self.writing, None
        if written is None or not (isinstance(exc, DBAPIError) and exc.connection_invalidated):
            return None
        outcomes, changes = written
        orders = await find_written_batch(self.engine, self.inventory.info, changes, now)
        if orders is None:
            return None
        log.warning("the write of a batch of %d failed with its connection, but it was committed", len(outcomes))
        for order, (order_id, created_at) in zip(changes.new_orders, orders):
            order.id, order.created_at = order_id, created_at
        self.inventory.committed(changes)
        return outcomes, changes

    async def _one_by_one(self, batch) -> list[Outcome]:
        """After a failed batch: reload the truth, then give each request its own transaction so one
        bad request (say, a reused idempotency key) cannot fail the others."""
        await self._load()
        outcomes = []
        for request, future in batch:
            try:
                [outcome], changes = await self._decide_and_write([request], _now())
            except IntegrityError as exc:
                changes = Changes()
                await self._load()
                outcome = integrity_refusal(exc, self.inventory)
            except (DBAPIError, StaleWrite):
                # Outcome unknown to us (the connection may have died mid-commit): a clean 503, then the
                # truth is reloaded; if that fails too, the loop answers the rest with 503.
                outcome = refuse(Refusal.UNAVAILABLE)
                changes = Changes()
                future.set_result(outcome)
                await self._load()
            if changes:
                self._publish(changes)
            if not future.done():  # answer at once: a later failure must not turn a commit into a 503
                future.set_result(outcome)
            outcomes.append(outcome)
        return outcomes

    def _idle_exit_after(self) -> float | None:
        """How long this actor may sit idle before it retires (None: it stays; always while it has an active
        hold to expire): TICKETING_ACTOR_IDLE_EXIT_SECONDS (never by default), or for a category that can no
        longer sell, TICKETING_CLOSED_ACTOR_EXIT_SECONDS (60 s by default)."""
        if self.inventory is not None and self.inventory.holds:
            return None
        selling = self.inventory.selling(_now()) if self.inventory is not None else not self.missing
        return idle_exit_after(self.idle_exit_s, self.closed_exit_s, selling=selling)

    def _may_retire(self) -> bool:
        """Idle long enough with nothing to keep: no request waiting and no active hold to expire. Its
        successor reloads from PostgreSQL."""
        exit_after = self._idle_exit_after()
        return (exit_after is not None and time.monotonic() - self.last_activity >= exit_after
                and not self.queue)

    def _retire(self) -> None:
        # From here on every submit answers None (nothing decided), so callers go to a new actor; then
        # the process ends and frees its memory. A call that meets the dead actor gets a clean 503.
        self.retired = True
        log.info("category %s idle for %.0f s: retiring", self.category_id, time.monotonic() - self.last_activity)
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    def _publish(self, changes: Changes) -> None:
        self.publisher.publish(self.inventory.figures(), order_notices(
            self.event_id, self.category_id, changes.new_orders, changes.cancelled_orders))


def restarted() -> bool:
    """Is this actor a restart of an earlier instance? Ray's property reads Ray's own deprecated
    `actor_id`, which printed a RayDeprecationWarning on the console for every new category actor."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


def connection_name(event_id: int, category_id: int) -> str:
    """The `application_name` of a category actor's connection: `pg_stat_activity` tells whose it is."""
    return f"ticketing category {event_id}/{category_id}"


def integrity_refusal(exc: IntegrityError, inventory: CategoryInventory | None) -> Outcome:
    """A request's write that the rules allowed was refused by the database, and `inventory` is the
    truth reloaded since: a reused idempotency key, the event's ticket limit (set or lowered while the
    request was decided: the reload knows it now), or any other conflict (retrying may succeed)."""
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if constraint == "one_order_per_idempotency_key" or "one_order_per_idempotency_key" in str(exc.orig):
        return refuse(Refusal.DUPLICATE_IDEMPOTENCY_KEY)
    if constraint == "ticket_limit_per_account" and inventory is not None and inventory.info.ticket_limit:
        return refuse(Refusal.TICKET_LIMIT, inventory.available, inventory.info.ticket_limit)
    return refuse(Refusal.CONFLICT)


class _Refresh:
    """Internal queue item: reload event/category details in order with the other requests."""

