"""The per-category coalescing of actors/client.py (`CategoryActors.call`), without Ray or a database.

The category's actor is a fake handle whose `submit.remote(requests, tunables)` returns a future the
test answers when it chooses; `handle()` is stubbed to hand out fake actors (a successor each time the
client forgets one). Everything else is the real client: the queue, the flush, `MAX_IN_FLIGHT`, the
answers and the retries.
"""
from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest
from ray.exceptions import ActorDiedError, RayActorError

from actors.client import MAX_IN_FLIGHT, RETIRED_RETRIES, CategoryActors
from domain.inventory import (
    Answers,
    ConfirmRequest,
    HoldRequest,
    Outcome,
    PurchaseRequest,
    Refusal,
    RefusalLease,
    refuse,
)

EVENT, CATEGORY = 7, 3
TUNABLES = {"hold_seconds": 60.0, "max_per_order": 10}


class FakeActor:
    """A category actor's handle: every `submit.remote` call is a batch the test answers later."""

    def __init__(self) -> None:
        self.batches: list[tuple[list, asyncio.Future]] = []
        self.submit = SimpleNamespace(remote=self._submit)

    def _submit(self, requests: list, tunables: dict) -> asyncio.Future:
        assert tunables == TUNABLES
        future = asyncio.get_running_loop().create_future()
        self.batches.append((list(requests), future))
        return future

    def open_batches(self) -> list[list]:
        return [requests for requests, future in self.batches if not future.done()]

    def answer(self, index: int, lease: RefusalLease | None = None) -> None:
        """Answer batch `index`: each request gets an outcome that names its user (available=user_id)."""
        requests, future = self.batches[index]
        future.set_result(Answers([Outcome(available=r.user_id) for r in requests], lease))


class Actors(CategoryActors):
    """The real client, with `handle()` giving out the fake actors in turn (no database, no Ray)."""

    def __init__(self, *actors: FakeActor) -> None:
        super().__init__("postgresql://nobody@127.0.0.1:9/none", TUNABLES)  # an engine that never connects
        self.actors = list(actors)
        self.handed_out: list[FakeActor] = []

    async def handle(self, event_id: int, category_id: int, *, create: bool = True):
        key = (event_id, category_id)
        if key not in self.handles:
            self.handles[key] = self.actors.pop(0)
            self.handed_out.append(self.handles[key])
        return self.handles[key]


async def settle() -> None:
    """Let every ready task and callback run (nothing here waits on anything but the test's futures)."""
    for _ in range(20):
        await asyncio.sleep(0)


def calls(client: Actors, users) -> list[asyncio.Task]:
    return [asyncio.create_task(client.call(EVENT, CATEGORY, HoldRequest(user, 1))) for user in users]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_calls_ride_in_at_most_max_in_flight_submits_in_arrival_order():
    async def scenario():
        actor = FakeActor()
        client = Actors(actor)
        first = calls(client, range(0, 10))
        await settle()
        assert actor.open_batches() == [[HoldRequest(u, 1) for u in range(0, 10)]]  # one submit for ten calls
        second = calls(client, range(10, 15))
        await settle()
        third = calls(client, range(15, 40))
        await settle()
        # One batch in flight (MAX_IN_FLIGHT): the later waves wait, queued, and leave together when it is back.
        assert MAX_IN_FLIGHT == 1
        assert [len(b) for b in actor.open_batches()] == [10]
        actor.answer(0)
        await settle()
        assert len(actor.open_batches()) <= MAX_IN_FLIGHT
        assert [b for b, _ in actor.batches][1] == [HoldRequest(u, 1) for u in range(10, 40)]  # in arrival order
        actor.answer(1)
        results = await asyncio.gather(*first, *second, *third)
        assert len(actor.batches) == 2
        # Every caller got its own answer.
        assert [r.available for r in results] == list(range(40))
        assert all(r.ok for r in results)

    run(scenario())


def test_never_more_than_max_in_flight_under_a_stream_of_calls():
    async def scenario():
        actor = FakeActor()
        client = Actors(actor)
        tasks, most = [], 0
        for wave in range(12):
            tasks += calls(client, range(wave * 5, wave * 5 + 5))
            await settle()
            most = max(most, len(actor.open_batches()))
            if wave % 2:  # now and then the oldest open batch comes back
                actor.answer(next(i for i, (_, f) in enumerate(actor.batches) if not f.done()))
                await settle()
                most = max(most, len(actor.open_batches()))
        while actor.open_batches():
            actor.answer(next(i for i, (_, f) in enumerate(actor.batches) if not f.done()))
            await settle()
            most = max(most, len(actor.open_batches()))
        results = await asyncio.gather(*tasks)
        assert most <= MAX_IN_FLIGHT
        assert [r.available for r in results] == list(range(60))
        # Every request was submitted once, in the order of arrival.
        assert [r.user_id for requests, _ in actor.batches for r in requests] == list(range(60))

    run(scenario())


@pytest.mark.parametrize("error", [RuntimeError("boom"), RayActorError()])
def test_a_failed_submit_answers_every_caller_unavailable(error):
    async def scenario():
        actor = FakeActor()
        client = Actors(actor)
        tasks = calls(client, range(6))
        await settle()
        actor.batches[0][1].set_exception(error)
        results = await asyncio.gather(*tasks)
        assert [r.refusal for r in results] == [Refusal.UNAVAILABLE] * 6
        # The client is not stuck: the next calls go through.
        later = calls(client, [99])
        await settle()
        actor.answer(1)
        assert (await later[0]).available == 99

    run(scenario())


@pytest.mark.parametrize("retired", ["none", "died"])
def test_a_retired_actor_makes_the_client_ask_its_successor(retired):
    async def scenario():
        old, successor = FakeActor(), FakeActor()
        client = Actors(old, successor)
        tasks = calls(client, range(4))
        await settle()
        if retired == "none":
            old.batches[0][1].set_result(None)  # retired without deciding anything
        else:
            old.batches[0][1].set_exception(ActorDiedError())
        await settle()
        assert client.handed_out == [old, successor]
        assert successor.open_batches() == [[HoldRequest(u, 1) for u in range(4)]]  # the same requests
        successor.answer(0)
        results = await asyncio.gather(*tasks)
        assert [r.available for r in results] == [0, 1, 2, 3]

    run(scenario())


@pytest.mark.parametrize("retired", ["answered", "died"])
def test_warming_a_category_whose_actor_retired_warms_its_successor(retired):
    """A replica's handle may be of an actor that retired since (say, its event was deleted, then put on
    sale again): warming it starts the successor, so the first buyer does not."""
    async def scenario():
        old, successor = FakeActor(), FakeActor()

        async def gone():
            if retired == "died":
                raise ActorDiedError()
            return {"eventId": EVENT, "categoryId": CATEGORY, "retired": True}

        async def loaded():
            return {"eventId": EVENT, "categoryId": CATEGORY, "availableSeats": 5}

        old.figures, successor.figures = SimpleNamespace(remote=gone), SimpleNamespace(remote=loaded)
        client = Actors(old, successor)
        await client.warm(EVENT, [CATEGORY])
        assert client.handed_out == [old, successor]
        assert client.handles[(EVENT, CATEGORY)] is successor

    run(scenario())


@pytest.mark.parametrize("retired", ["answered", "died"])
def test_a_refresh_reaches_the_successor_of_an_actor_that_retired(retired):
    """The kept handle is of an actor that retired since, and a successor (loaded before the event changed)
    runs under its name: that successor must reload, or it would sell on stale details."""
    async def scenario():
        old, successor = FakeActor(), FakeActor()
        reloaded = []

        async def gone():
            if retired == "died":
                raise ActorDiedError()
            return {"retired": True}

        async def reload():
            reloaded.append(successor)
            return {"eventId": EVENT, "categoryId": CATEGORY, "availableSeats": 5}

        old.refresh, successor.refresh = SimpleNamespace(remote=gone), SimpleNamespace(remote=reload)
        client = Actors(old, successor)
        await client.refresh(EVENT, [CATEGORY])
        assert reloaded == [successor]
        assert client.handed_out == [old, successor]

    run(scenario())


def test_new_settings_skip_actors_that_retired():
    async def scenario():
        old = FakeActor()

        async def died(tunables):
            raise ActorDiedError()

        old.configure = SimpleNamespace(remote=died)
        client = Actors(old)
        await client.handle(EVENT, CATEGORY)
        await client.configure({"hold_seconds": 120})  # does not fail on the retired actor
        assert (EVENT, CATEGORY) not in client.handles

    run(scenario())


def test_successors_that_all_retire_end_in_unavailable():
    async def scenario():
        actors = [FakeActor() for _ in range(RETIRED_RETRIES)]
        client = Actors(*actors)
        tasks = calls(client, range(3))
        for actor in actors:
            await settle()
            actor.batches[0][1].set_result(None)
        results = await asyncio.gather(*tasks)
        assert [r.refusal for r in results] == [Refusal.UNAVAILABLE] * 3

    run(scenario())


SOLD_OUT = RefusalLease(seconds=0.2, closed=None, max_per_order=10, holders=frozenset())


def test_while_a_lease_runs_the_requests_it_covers_are_answered_without_a_call():
    async def scenario():
        actor = FakeActor()
        client = Actors(actor)
        first = calls(client, [1])
        await settle()
        actor.answer(0, lease=SOLD_OUT)
        await first[0]
        bought = await client.call(EVENT, CATEGORY, PurchaseRequest(2, 3))
        held = await client.call(EVENT, CATEGORY, HoldRequest(3, 1))
        assert (bought, held) == (refuse(Refusal.NOT_ENOUGH_TO_BUY, 0), refuse(Refusal.NOT_ENOUGH_TO_HOLD, 0))
        assert len(actor.batches) == 1  # no call
        # What the lease does not cover still goes to the actor: a confirmation, a bad quantity.
        others = [asyncio.create_task(client.call(EVENT, CATEGORY, r))
                  for r in (ConfirmRequest(4, uuid.uuid4()), PurchaseRequest(5, 0))]
        await settle()
        assert [len(b) for b in actor.open_batches()] == [2]
        actor.answer(1)  # no lease with this answer: the category changed, the old lease is dropped
        await asyncio.gather(*others)
        later = calls(client, [6])
        await settle()
        assert len(actor.open_batches()) == 1
        actor.answer(2)
        await later[0]

    run(scenario())


def test_requests_that_waited_behind_a_call_are_answered_from_the_lease_it_brings():
    async def scenario():
        actor = FakeActor()
        client = Actors(actor)
        first = calls(client, [1])
        await settle()
        # Arrived while the call was in flight: covered by its lease (a purchase, someone's hold) or not
        # (a confirmation, which only the actor can decide).
        waiting = [asyncio.create_task(client.call(EVENT, CATEGORY, r))
                   for r in (PurchaseRequest(2, 1), HoldRequest(3, 2), ConfirmRequest(4, uuid.uuid4()))]
        await settle()
        actor.answer(0, lease=SOLD_OUT)
        await settle()
        assert await first[0] == Outcome(available=1)
        assert [[type(r) for r in batch] for batch in actor.open_batches()] == [[ConfirmRequest]]
        assert [w.result() for w in waiting[:2]] == [refuse(Refusal.NOT_ENOUGH_TO_BUY, 0),
                                                     refuse(Refusal.NOT_ENOUGH_TO_HOLD, 0)]
        actor.answer(1, lease=SOLD_OUT)
        assert (await waiting[2]).available == 4
        assert client.lease_metrics.counts == {(EVENT, CATEGORY, "purchase"): 1, (EVENT, CATEGORY, "hold"): 1}

    run(scenario())


def test_a_lease_runs_out_counted_from_when_its_call_was_sent():
    async def scenario():
        actor = FakeActor()
        client = Actors(actor)
        first = calls(client, [1])
        await settle()
        await asyncio.sleep(0.6)  # the actor takes its time to answer: that time counts
        actor.answer(0, lease=RefusalLease(seconds=1.0, closed=None, max_per_order=10, holders=frozenset()))
        await first[0]
        assert (await client.call(EVENT, CATEGORY, PurchaseRequest(2, 1))).refusal is Refusal.NOT_ENOUGH_TO_BUY
        assert client.lease_metrics.counts == {(EVENT, CATEGORY, "purchase"): 1}  # counted, not yet handed to Ray
        await asyncio.sleep(0.5)  # 1.1 s after the call was sent: over, though answered 0.5 s ago
        assert client.lease_metrics.counts == {}  # handed to Ray when the lease ran out
        later = asyncio.create_task(client.call(EVENT, CATEGORY, PurchaseRequest(3, 1)))
        await settle()
        assert actor.open_batches() == [[PurchaseRequest(3, 1)]]
        actor.answer(1)
        assert (await later).available == 3

    run(scenario())
