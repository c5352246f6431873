"""How deployments reach the waiting-room actors: find or create an event's queue actor, and coalesce
joins (a burst of joins from one replica travels in one call per event; the actor writes them together)."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import ray
from ray.exceptions import ActorDiedError, RayError

from actors import NAMESPACE, queue_actor_name
from actors.queue import EventQueue, Join
from domain.errors import Unavailable
from domain.queue import Place, QueueFigures
from storage.database import make_engine
from storage.queue_store import queued_events

log = logging.getLogger(__name__)
ASK_ATTEMPTS = 10  # ~10 s of backoff: longer than an actor restart takes


class EventQueues:
    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.engine = make_engine(db_url, pool_size=1)
        self.handles: dict[int, ray.actor.ActorHandle] = {}
        self.pending: dict[int, list[Join]] = {}
        self.in_flight: set[int] = set()

    def handle(self, event_id: int, *, create: bool = True):
        """The event's queue actor. Callers create one only for an event whose queue is on."""
        if event_id not in self.handles:
            try:
                self.handles[event_id] = ray.get_actor(queue_actor_name(event_id), namespace=NAMESPACE)
            except ValueError:
                if not create:
                    return None
                self.handles[event_id] = EventQueue.options(
                    name=queue_actor_name(event_id), namespace=NAMESPACE, lifetime="detached",
                    get_if_exists=True,
                ).remote(self.db_url, event_id)
        return self.handles[event_id]

    async def join(self, event_id: int, user_id: int) -> tuple[Place | None, QueueFigures]:
        future = asyncio.get_running_loop().create_future()
        queue = self.pending.setdefault(event_id, [])
        # When the buyer came, not when the call leaves (it may wait behind one in flight): whoever came
        # before the sale's start is in its draw.
        queue.append(Join(user_id, future, datetime.now(timezone.utc)))
        if len(queue) == 1 and event_id not in self.in_flight:
            asyncio.get_running_loop().call_soon(self._flush, event_id)
        return await future

    def _flush(self, event_id: int) -> None:
        queue = self.pending.pop(event_id, None)
        if queue:
            self.in_flight.add(event_id)
            asyncio.get_running_loop().create_task(self._send(event_id, queue))

    async def _send(self, event_id: int, queue: list[Join]) -> None:
        try:
            places, figures = await self._ask(
                lambda h: h.join.remote([join.user_id for join in queue], [join.arrived for join in queue]),
                event_id)
            answers = [(None if places is None else place, figures) for place in (places or [None] * len(queue))]
            for join, answer in zip(queue, answers):
                if not join.answer.done():
                    join.answer.set_result(answer)
        except Exception as exc:  # noqa: BLE001 - every caller gets an answer
            log.warning("queue actor of event %s unavailable: %s", event_id, exc)
            for join in queue:
                if not join.answer.done():
                    join.answer.set_exception(exc if isinstance(exc, Unavailable)
                                         else Unavailable("Queue temporarily unavailable, please retry"))
        finally:
            self.in_flight.discard(event_id)
            if self.pending.get(event_id):
                self._flush(event_id)

    async def state(self, event_id: int, user_id: int) -> tuple[Place | None, QueueFigures]:
        return await self._ask(lambda h: h.state.remote(user_id), event_id)

    async def states(self, event_id: int, user_ids: list[int]) -> tuple[list[Place | None], QueueFigures]:
        return await self._ask(lambda h: h.states.remote(user_ids), event_id)

    async def figures(self, event_id: int) -> QueueFigures:
        return await self._ask(lambda h: h.figures.remote(), event_id)

    async def refresh(self, event_id: int) -> None:
        """Tell a running queue that its event's sale settings changed (or start it if the queue is now on)."""
        await self._ask(lambda h: h.refresh.remote(), event_id)

    async def warm_queued(self) -> int:
        """Start the queue actor of every event with a queue on (after a start or restart)."""
        events = await queued_events(self.engine, datetime.now(timezone.utc))
        await asyncio.gather(*(self.figures(e) for e in events), return_exceptions=True)
        return len(events)

    async def _ask(self, method, event_id: int):
        """Every queue call is safe to repeat (joining again gives the same place), so a call that meets
        the actor restarting is retried for a while before the caller gets a 503."""
        for attempt in range(ASK_ATTEMPTS):
            try:
                return await method(self.handle(event_id))
            except ActorDiedError:
                self.handles.pop(event_id, None)  # killed for good: the next attempt makes a new one
            except RayError as exc:
                log.warning("queue actor of event %s unavailable (attempt %d): %s", event_id, attempt + 1, exc)
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        raise Unavailable("Queue temporarily unavailable, please retry")
