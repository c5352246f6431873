"""Pushing a buyer's turn over the socket: the rules (domain/queue.py, domain/realtime.py) and one replica's
queue watch (deployments/realtime_queue.py) with a fake actor and a hand-driven clock. Pure asyncio."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import pytest

from deployments.realtime_queue import QueueWatch
from deployments.realtime_session import Session
from deployments.views import queue_state_view
from domain import realtime as proto
from domain.queue import Place, QueueFigures, needs_fresh_state
from domain.vocabulary import QueueStatus

EVENT = 7
LATER = datetime(2099, 1, 1, tzinfo=timezone.utc)  # a pass that has not expired whenever the test runs


def figures(admitted: int = 0, *, drawn: bool = True, waiting: int = 100, enabled: bool = True,
            paused: bool = False) -> QueueFigures:
    return QueueFigures(event_id=EVENT, enabled=enabled, drawn=drawn, paused=paused, sale_starts_at=None,
                        pre_queue=0, waiting=waiting, admitted=admitted, shopping=admitted,
                        admitted_last_minute=0, admission_per_minute=60, max_shoppers=None)


def waiting(user_id: int, place: int | None) -> Place:
    return Place(user_id, place, QueueStatus.WAITING)


# ---- the rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry, f, fresh", [
    (None, figures(50), False),
    (waiting(1, 10), figures(9), False),  # nobody ahead: known from the figures
    (waiting(1, 10), figures(10), True),  # its turn came: admission time and expiry are the actor's
    (waiting(1, None), figures(0, drawn=False), False),  # still in the pre-queue
    (waiting(1, None), figures(0, drawn=True), True),  # drawn: its place is the actor's
    (Place(1, 3, QueueStatus.ADMITTED, datetime.now(timezone.utc), LATER), figures(50), False),
])
def test_a_copy_of_a_place_needs_the_actor_only_when_the_figures_cannot_tell(entry, f, fresh):
    assert needs_fresh_state(entry, f) is fresh


def test_pushes_go_at_once_on_a_status_change_and_at_most_once_per_interval_otherwise():
    waiting5, waiting4, admitted = ("waiting", 9, 5), ("waiting", 9, 4), ("admitted", 9, 0)
    assert proto.queue_push_at(None, 0.0, waiting5, 100.0, 2.0) == 100.0  # never sent: now
    assert proto.queue_push_at(waiting5, 99.0, waiting5, 100.0, 2.0) is None  # nothing changed
    assert proto.queue_push_at(waiting5, 99.0, waiting4, 100.0, 2.0) == 101.0  # held back
    assert proto.queue_push_at(waiting5, 90.0, waiting4, 100.0, 2.0) == 100.0  # interval over
    assert proto.queue_push_at(waiting5, 99.9, admitted, 100.0, 2.0) == 100.0  # admitted: at once
    assert proto.queue_push_at(("waiting", None, None), 99.9, waiting5, 100.0, 2.0) == 100.0  # drawn: at once


def test_the_queue_length_alone_is_not_news():
    state = queue_state_view(waiting(1, 10), figures(2), datetime.now(timezone.utc), None)
    longer = queue_state_view(waiting(1, 10), figures(2, waiting=5000), datetime.now(timezone.utc), None)
    assert state["queueLength"] != longer["queueLength"]
    assert proto.queue_seen(state) == proto.queue_seen(longer)


@pytest.mark.parametrize("value, ok", [(None, True), ("", True), ("a.b.c", True), (5, False), ("x" * 2001, False)])
def test_queue_pass_in_a_payload(value, ok):
    if ok:
        assert proto.queue_pass({"queuePass": value}) == (value or None)
    else:
        with pytest.raises(proto.ProtocolError, match="queuePass must be a string"):
            proto.queue_pass({"queuePass": value})


# ---- one replica's watch -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeQueue:
    """The queue actor's answers: each user's entry, and the calls made."""

    def __init__(self) -> None:
        self.entries: dict[int, Place] = {}
        self.figures = figures()
        self.calls: list[list[int]] = []

    async def states(self, event_id: int, user_ids: list[int]):
        self.calls.append(list(user_ids))
        return [self.entries.get(u) for u in user_ids], self.figures


def view(entry, f, event_id):
    now = datetime.now(timezone.utc)
    token = f"pass-{entry.user_id}" if entry is not None and entry.status is QueueStatus.ADMITTED else None
    return queue_state_view(entry, f, now, token)


def pushed(session: Session) -> list[dict]:
    return [m["data"] for m in map(json.loads, session.outbox.take()) if m["event"] == "queue-status"]


def run(coro):
    return asyncio.run(coro)


def test_waiting_sockets_follow_the_figures_coalesced_per_interval():
    async def scenario():
        clock, actor = Clock(), FakeQueue()
        watch = QueueWatch(actor.states, view, interval_s=2.0, clock=clock)
        sockets = [Session(f"s{i}", i) for i in range(1, 301)]
        for i, s in enumerate(sockets, 1):
            reply = watch.watch(s, EVENT, waiting(i, i + 50), figures(0))
            assert reply["peopleAhead"] == i + 49
        # ten admission steps a quarter second apart: each socket gets at most one push per 2 s
        for step in range(1, 11):
            clock.now += 0.25
            watch.deliver([{**figures(step).__dict__, "committedAt": 1.0}])  # as the Publisher sends them
            await watch.step()
        counts = [len(pushed(s)) for s in sockets]
        assert max(counts) <= 2 and min(counts) >= 1, counts
        assert actor.calls == []  # nobody's turn came: the figures alone told everyone
        # when the interval is over, the held-back change goes out with the newest figures
        clock.now += 2.0
        await watch.step()
        last = pushed(sockets[0])
        assert last and last[-1]["peopleAhead"] == 51 - 1 - 10
        assert watch.pushed == sum(counts) + len(last) + sum(len(pushed(s)) for s in sockets[1:])
    run(scenario())


def test_when_the_turn_comes_the_actor_is_asked_once_in_a_batch_and_the_pass_goes_at_once():
    async def scenario():
        clock, actor = Clock(), FakeQueue()
        watch = QueueWatch(actor.states, view, interval_s=60.0, clock=clock)
        sockets = [Session(f"s{i}", i) for i in range(1, 6)]
        for i, s in enumerate(sockets, 1):
            watch.watch(s, EVENT, waiting(i, i), figures(0))
        admitted_at = datetime.now(timezone.utc)
        for i in (1, 2, 3):
            actor.entries[i] = Place(i, i, QueueStatus.ADMITTED, admitted_at, LATER)
        actor.figures = figures(3)
        watch.deliver([figures(3).__dict__])
        await watch.step()
        while watch.tasks:
            await asyncio.sleep(0)
        assert actor.calls == [[1, 2, 3]]
        for i in (1, 2, 3):
            (state,) = pushed(sockets[i - 1])
            assert state["status"] == "admitted" and state["queuePass"] == f"pass-{i}"
            assert watch.pass_of(sockets[i - 1], EVENT) == f"pass-{i}"
        assert watch.pass_of(sockets[3], EVENT) is None
        # the next figures do not ask again for those already admitted
        watch.deliver([figures(3, waiting=2).__dict__])
        await watch.step()
        assert actor.calls == [[1, 2, 3]]
    run(scenario())


def test_the_pre_queue_learns_its_places_after_the_draw():
    async def scenario():
        clock, actor = Clock(), FakeQueue()
        watch = QueueWatch(actor.states, view, interval_s=60.0, clock=clock)
        a, b = Session("a", 1), Session("b", 2)
        for s in (a, b):
            assert watch.watch(s, EVENT, waiting(s.user_id, None), figures(0, drawn=False))["place"] is None
        watch.deliver([figures(0, drawn=False, waiting=0).__dict__])  # before the draw: nothing to ask
        await watch.step()
        assert actor.calls == []
        actor.entries = {1: waiting(1, 2), 2: waiting(2, 1)}
        actor.figures = figures(0, drawn=True, waiting=2)
        watch.deliver([actor.figures.__dict__])
        await watch.step()
        while watch.tasks:
            await asyncio.sleep(0)
        assert sorted(map(sorted, actor.calls)) == [[1, 2]]
        assert [(p["place"], p["peopleAhead"]) for p in pushed(a)] == [(2, 1)]
        assert [(p["place"], p["peopleAhead"]) for p in pushed(b)] == [(1, 0)]
    run(scenario())


def test_gone_sockets_and_other_events_are_left_alone():
    async def scenario():
        clock, actor = Clock(), FakeQueue()
        watch = QueueWatch(actor.states, view, interval_s=2.0, clock=clock)
        gone, other = Session("g", 1), Session("o", 2)
        watch.watch(gone, EVENT, waiting(1, 10), figures(0))
        watch.forget(gone)
        watch.deliver([figures(5).__dict__, {**figures(5).__dict__, "event_id": EVENT + 1}])
        await watch.step()
        assert pushed(gone) == [] and pushed(other) == []
        assert watch.stats()["queueSockets"] == 0
    run(scenario())


def test_older_figures_than_the_reply_are_not_pushed():
    async def scenario():
        clock, actor = Clock(), FakeQueue()
        watch = QueueWatch(actor.states, view, interval_s=0.0, clock=clock)
        s = Session("s", 1)
        watch.watch(s, EVENT, waiting(1, 20), figures(10))
        watch.deliver([figures(8).__dict__])  # published before the join's answer was read
        await watch.step()
        assert pushed(s) == []
        watch.deliver([figures(12).__dict__])
        await watch.step()
        assert [p["peopleAhead"] for p in pushed(s)] == [7]
    run(scenario())


def test_a_queue_switched_off_and_on_again_pushes_again():
    async def scenario():
        clock, actor = Clock(), FakeQueue()
        watch = QueueWatch(actor.states, view, interval_s=2.0, clock=clock)
        s = Session("s", 1)
        watch.watch(s, EVENT, waiting(1, 20), figures(0))
        for f in (figures(3), figures(3, enabled=False), figures(4)):  # held back, off, on again: all at once
            clock.now += 0.1
            watch.deliver([f.__dict__])
            await watch.step()
        assert pushed(s) == []
        clock.now += 2.0  # the interval is over: the change goes out
        await watch.step()
        assert [p["peopleAhead"] for p in pushed(s)] == [15]
    run(scenario())
