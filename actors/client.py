"""How deployments reach the category actors: find or create the actor, and coalesce calls.

Concurrent requests for the same category from one replica travel in one `submit` call (at most
`MAX_IN_FLIGHT` calls per category at a time; whatever arrives meanwhile rides the next one), so a rush
costs a fraction of a Ray call per request. The actor then commits them together.

While a category is sold out or off sale, its answers carry a refusal lease
(`domain.inventory.RefusalLease`): until it runs out, the purchases (and holds) it covers are answered
here, with the very refusal the actor would give, and no call at all.

`CategoryActors` is also the one keeper of a process's tunables (hold duration, per-order maximum): the
environment's (`ticketing.settings.tunables()`) unless given, overridden by a deployment's user_config
through `adopt` / `configure`, and handed to every actor it creates or calls.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

import ray
from ray.exceptions import ActorDiedError, RayError

from actors import NAMESPACE, category_actor_name
from actors.broadcaster import broadcaster, forget_if_gone
from actors.category import TicketCategory
from actors.metrics import LeaseMetrics
from domain.errors import Unavailable
from domain.inventory import Answers, Outcome, Refusal, RefusalLease, Request, refuse
from storage.database import make_engine
from storage.events_store import category_exists, on_sale_categories, stored_figures
from ticketing import settings

log = logging.getLogger(__name__)
# One call per category in flight from a replica: what arrives meanwhile waits for it and leaves as one
# bigger call. Measured on 2026-12-02 (bench/buy_path.py, orders rush at c64, two runs each): 1,828-1,846
# answers/s with one against 1,680-1,700 with two, p99 alike; the actor takes every waiting call into its
# batch either way, so a second call in flight only added Ray calls.
MAX_IN_FLIGHT = 1
WARM_AT_ONCE = 8  # actor processes started together when warming many categories
RETIRED_RETRIES = 3  # successors asked when an actor answers that it has retired
REFRESH_ATTEMPTS = 12  # ~15 s of backoff: longer than an actor restart takes
PUBLISH_WAIT_S = 5.0  # longest a refresh waits for the broadcaster to take a category's stored figures

Key = tuple[int, int]


class CategoryActors:
    def __init__(self, db_url: str, tunables: settings.Tunables | dict | None = None) -> None:
        """`tunables`: the values for the actors this client creates; the environment's when None, and a
        dict overrides the environment's key by key (tools and tests pass one)."""
        self.db_url = db_url
        if not isinstance(tunables, settings.Tunables):
            tunables = settings.tunables().merged(tunables)
        self._set(tunables)
        self.engine = make_engine(db_url, pool_size=2)
        self.handles: dict[Key, ray.actor.ActorHandle] = {}
        self.pending: dict[Key, list[tuple[Request, asyncio.Future]]] = {}
        self.in_flight: dict[Key, int] = {}
        self.leases: dict[Key, tuple[float, RefusalLease]] = {}  # (time.monotonic() it ends, lease)
        self.lease_metrics = LeaseMetrics()
        self.lease_metrics_due = False

    async def handle(self, event_id: int, category_id: int, *, create: bool = True):
        """The category's actor, or None if no such category exists (no actor is made for it).

        A running actor is found by name first (one lookup, no database query: actors are only ever
        created for categories found in the database), so a replica that did not warm a category
        itself still reaches its actor at once."""
        key = (event_id, category_id)
        if key not in self.handles:
            try:
                self.handles[key] = ray.get_actor(category_actor_name(*key), namespace=NAMESPACE)
            except ValueError:
                if not create or not await category_exists(self.engine, event_id, category_id):
                    return None
                self.handles[key] = TicketCategory.options(
                    name=category_actor_name(*key),
                    namespace=NAMESPACE,
                    lifetime="detached",
                    get_if_exists=True,
                ).remote(self.db_url, event_id, category_id, self._tunables_sent)
        return self.handles[key]

    async def call(self, event_id: int, category_id: int, request: Request) -> Outcome:
        key = (event_id, category_id)
        if (leased := self._leased_answer(key, request)) is not None:
            return leased
        if await self.handle(event_id, category_id) is None:
            return refuse(Refusal.CATEGORY_NOT_FOUND)
        future = asyncio.get_running_loop().create_future()
        queue = self.pending.setdefault(key, [])
        queue.append((request, future))
        if len(queue) == 1 and self.in_flight.get(key, 0) < MAX_IN_FLIGHT:
            asyncio.get_running_loop().call_soon(self._flush, key)
        return await future

    def _flush(self, key: Key) -> None:
        # Requests that waited behind a call whose answer brought a lease are answered from it, not sent.
        queue = [(request, future) for request, future in self.pending.pop(key, ())
                 if not self._answered_from_lease(key, request, future)]
        if queue:
            self.in_flight[key] = self.in_flight.get(key, 0) + 1
            asyncio.get_running_loop().create_task(self._send(key, queue))

    def _leased_answer(self, key: Key, request: Request) -> Outcome | None:
        if (held := self.leases.get(key)) is None:
            return None
        ends, lease = held
        now = time.monotonic()
        if now >= ends:
            del self.leases[key]
            return None
        if (answer := lease.answer(request)) is not None:
            self.lease_metrics.count(*key, request)
            if not self.lease_metrics_due:  # counted in bulk when this lease runs out
                self.lease_metrics_due = True
                asyncio.get_running_loop().call_later(ends - now, self._flush_lease_metrics)
        return answer

    def _answered_from_lease(self, key: Key, request: Request, future: asyncio.Future) -> bool:
        if (answer := self._leased_answer(key, request)) is None:
            return False
        if not future.done():
            future.set_result(answer)
        return True

    def _take_lease(self, key: Key, answers: Answers, sent: float) -> None:
        # Counted from before the call was sent: it ends no later than the actor's own count of it.
        if answers.lease is None:
            self.leases.pop(key, None)
            return
        self.leases[key] = (sent + answers.lease.seconds, answers.lease)

    def _flush_lease_metrics(self) -> None:
        self.lease_metrics_due = False
        self.lease_metrics.flush()

    async def _send(self, key: Key, queue: list[tuple[Request, asyncio.Future]]) -> None:
        requests = [request for request, _ in queue]
        results: list[Outcome] | None = None
        try:
            for _ in range(RETIRED_RETRIES):
                handle = await self.handle(*key)
                if handle is None:  # deleted meanwhile
                    results = [refuse(Refusal.CATEGORY_NOT_FOUND) for _ in queue]
                    break
                sent = time.monotonic()
                try:
                    answers = await handle.submit.remote(requests, self._tunables_sent)
                except ActorDiedError:
                    # Gone for good, not restarting: in this system only an actor that retired (idle,
                    # no hold, see TicketCategory._retire) is, and it decided nothing; its successor will.
                    # (Operators stop a category actor with a plain ray.kill, which restarts it.)
                    answers = None
                if answers is not None:
                    results = answers.outcomes
                    self._take_lease(key, answers, sent)
                    break
                self._forget(key, handle)  # retired without deciding anything: its successor decides
            if results is None:
                results = [refuse(Refusal.UNAVAILABLE) for _ in queue]
        except Exception as exc:  # noqa: BLE001 - every caller must get an answer, never hang
            # The actor died mid-call (it restarts on its own). The outcome is unknown to us, so
            # the client must retry; holds and idempotency keys make retries safe.
            if not isinstance(exc, RayError):
                log.exception("unexpected failure calling category actor %s", key)
            else:
                log.warning("category actor %s unavailable: %s", key, exc)
            results = [refuse(Refusal.UNAVAILABLE) for _ in queue]
        finally:
            self.in_flight[key] -= 1
            if self.pending.get(key) and self.in_flight[key] < MAX_IN_FLIGHT:
                self._flush(key)
        for (_, future), result in zip(queue, results):
            if not future.done():
                future.set_result(result)

    def _forget(self, key: Key, handle) -> None:
        if self.handles.get(key) is handle:
            del self.handles[key]

    async def warm(self, event_id: int, category_ids: list[int]) -> None:
        """Create and load the actors of these categories now, so their first buyer does not wait for a
        worker process to start and the category to load (the organizer's request pays instead)."""
        await asyncio.gather(*(self._warm_one((event_id, c)) for c in category_ids))

    async def _warm_one(self, key: Key) -> None:
        for _ in range(RETIRED_RETRIES):
            handle = await self.handle(*key)
            if handle is None:
                return
            try:
                if not (await handle.figures.remote()).get("retired"):
                    return
            except ActorDiedError:  # this replica's handle is of an actor that retired since: warm a successor
                pass
            self._forget(key, handle)

    async def warm_on_sale(self, event_id: int | None = None) -> int:
        """Warm every category that is on sale (after a start or restart of the system), or those of one
        event (after it was created or edited)."""
        keys = await on_sale_categories(self.engine, datetime.now(timezone.utc), event_id)
        gate = asyncio.Semaphore(WARM_AT_ONCE)

        async def one(event_id: int, category_id: int) -> None:
            async with gate:
                await self.warm(event_id, [category_id])

        await asyncio.gather(*(one(*key) for key in keys))
        return len(keys)

    async def figures(self, event_id: int, category_id: int) -> dict | None:
        handle = await self.handle(event_id, category_id, create=False)
        return None if handle is None else await handle.figures.remote()

    async def refresh(self, event_id: int, category_ids: list[int]) -> None:
        """Tell the running actors of these categories that their event changed (renamed, rescheduled,
        deleted); returns once each has reloaded and published its figures. For a category whose actor
        does not run, the next one loads the new details, and its figures from the database are published
        now if it went off sale, so that its watchers see that too (a deleted event, say)."""
        for category_id in category_ids:
            await self._refresh_one((event_id, category_id))

    async def _refresh_one(self, key: Key) -> None:
        # Only an answered refresh proves no instance still sells on stale details. The handle this client
        # kept may be of an actor that retired since, while a successor, loaded before the change, runs
        # under its name: so the name is looked up again until an actor answers or none runs.
        for attempt in range(REFRESH_ATTEMPTS):
            handle = await self.handle(*key, create=False)
            if handle is None:
                await self._publish_stored(key)
                return
            try:
                answer = await handle.refresh.remote()
                if not answer.get("retired"):
                    return
            except ActorDiedError:  # retired for good since this client last called it
                pass
            except RayError:  # restarting: it reloads anyway, but only its answer proves it
                log.warning("refresh of category actor %s failed (attempt %d)", key, attempt + 1)
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
                continue
            self._forget(key, handle)
            await asyncio.sleep(min(0.05 * 2**attempt, 2.0))  # a retiring actor keeps its name until it ends
        raise Unavailable("Service temporarily unavailable, please retry")

    async def _publish_stored(self, key: Key) -> None:
        """No actor runs for this category, so none will tell its watchers that it went off sale (its event
        deleted, say): publish its figures from the database, whose counters are exact while no actor runs.
        Only off-sale figures: an actor that a buyer starts meanwhile publishes newer ones, and they must
        not be overwritten by these. A failure is logged and changes nothing else: the refresh goes on."""
        try:
            figures = await stored_figures(self.engine, *key)
            if figures is not None and not figures["onSale"]:
                await asyncio.wait_for(broadcaster().publish.remote(figures, []), PUBLISH_WAIT_S)
        except Exception as exc:  # noqa: BLE001 - watchers see it at the category's next change
            forget_if_gone(exc)
            log.warning("publishing the stored figures of category %s failed: %r", key, exc)

    def _set(self, tunables: settings.Tunables) -> None:
        self.tunables = tunables
        self._tunables_sent = tunables.as_dict()  # built once, sent with every call

    def adopt(self, user_config: dict | None) -> None:
        """A deployment's user_config over the environment's tunables, for the actors this client may be
        first to create (or that restart); running actors keep theirs."""
        self._set(settings.tunables().merged(user_config))

    async def configure(self, user_config: dict | None) -> None:
        """`adopt`, and push the new values to every actor this client knows (new holds only)."""
        self.adopt(user_config)
        known = list(self.handles.items())
        results = await asyncio.gather(*(h.configure.remote(self._tunables_sent) for _, h in known),
                                       return_exceptions=True)
        for (key, handle), result in zip(known, results):
            if isinstance(result, ActorDiedError):  # retired: a successor is created with the new values
                self._forget(key, handle)
            elif isinstance(result, BaseException):
                raise result
