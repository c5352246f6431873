"""The category actor's publisher on its own (no Ray): one publish in flight, the rest merged."""
from __future__ import annotations

import asyncio

from actors.broadcaster import Publisher


def test_batches_committed_during_a_publish_ride_the_next_one_with_every_notice():
    async def run() -> list:
        sent, gates = [], []

        async def send(figures, notices):
            sent.append((figures["availableSeats"], list(notices)))
            gate = asyncio.Event()
            gates.append(gate)
            await gate.wait()

        publisher = Publisher(send)
        publisher.publish({"availableSeats": 9}, [("order-completed", 1, {})])
        await asyncio.sleep(0)
        for seats, user in ((8, 2), (7, 3), (6, 4)):  # three batches commit while the first is in flight
            publisher.publish({"availableSeats": seats}, [("order-completed", user, {})])
        await asyncio.sleep(0)
        assert len(sent) == 1
        gates[0].set()
        for _ in range(5):
            await asyncio.sleep(0)
        gates[1].set()
        for _ in range(5):
            await asyncio.sleep(0)
        return sent

    sent = asyncio.run(run())
    assert [seats for seats, _ in sent] == [9, 6]  # the newest figures only
    assert [user for _, notices in sent for _, user, _ in notices] == [1, 2, 3, 4]  # no notice lost


def test_a_failed_publish_does_not_stop_the_next():
    async def run() -> list:
        sent = []

        async def send(figures, notices):
            sent.append(figures["availableSeats"])
            if len(sent) == 1:
                raise RuntimeError("broadcaster restarting")

        publisher = Publisher(send)
        publisher.publish({"availableSeats": 5}, [])
        publisher.publish({"availableSeats": 4}, [])
        for _ in range(5):
            await asyncio.sleep(0)
        return sent

    assert asyncio.run(run()) == [5, 4]


def test_a_poller_out_of_sync_is_answered_at_once_even_before_anything_was_published():
    """A replica's first poll (no epoch yet) must not wait for the first change: its sockets are told they
    are connected only once it is in sync (deployments/realtime_hub.py)."""
    from actors.broadcaster import Broadcaster

    async def run() -> None:
        broadcaster = Broadcaster.__ray_actor_class__()  # the actor's own class, without Ray
        first = await asyncio.wait_for(broadcaster.poll(None, 0, timeout=30), 1.0)
        assert first["epoch"] and first["version"] == 0 and first["snapshots"] == []
        # In sync, a poll waits for the next change and gets it.
        waiting = asyncio.ensure_future(broadcaster.poll(first["epoch"], 0, timeout=30))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        await broadcaster.publish({"eventId": 1, "categoryId": 2}, [("order-completed", 7, {"orderId": 3})])
        got = await asyncio.wait_for(waiting, 1.0)
        assert got["version"] == 1 and got["notices"] == [("order-completed", 7, {"orderId": 3})]

    asyncio.run(run())


def test_in_a_rush_at_most_one_publish_per_interval_and_a_change_after_a_quiet_spell_goes_at_once():
    async def run() -> None:
        sent, times = [], []
        loop = asyncio.get_running_loop()

        async def send(figures, notices):
            sent.append((figures["availableSeats"], [user for _, user, _ in notices]))
            times.append(loop.time())

        publisher = Publisher(send, interval=0.05)
        publisher.publish({"availableSeats": 9}, [("order-completed", 1, {})])
        await asyncio.sleep(0)
        assert sent == [(9, [1])]  # the first change: at once
        for seats in range(8, 0, -1):  # more batches commit within the interval
            publisher.publish({"availableSeats": seats}, [("order-completed", 10 - seats, {})])
            await asyncio.sleep(0)
        assert len(sent) == 1  # they wait for the interval...
        await asyncio.sleep(0.2)
        assert sent[1] == (1, list(range(2, 10)))  # ...and go together: the newest figures, every notice
        publisher.publish({"availableSeats": 0}, [("order-completed", 10, {})])  # a quiet spell: at once
        await asyncio.sleep(0)
        assert len(sent) == 3
        publisher.publish({"availableSeats": 0}, [("order-completed", 11, {})])  # right after: it waits
        await asyncio.sleep(0)
        assert len(sent) == 3
        await asyncio.sleep(0.2)
        assert [user for _, users in sent for user in users] == list(range(1, 12))  # no notice lost
        assert all(b - a >= 0.049 for a, b in zip(times, times[1:]))  # never two within the interval

    asyncio.run(run())


def test_a_publish_that_cannot_even_be_sent_does_not_stop_the_next():
    """A send that fails at once (no coroutine made) must not leave the publisher waiting for it forever."""
    async def run() -> list:
        sent = []

        def send(figures, notices):
            if not sent:
                sent.append(None)
                raise RuntimeError("no broadcaster handle")
            sent.append(figures["availableSeats"])
            return asyncio.sleep(0)

        publisher = Publisher(send, interval=0.01)
        publisher.publish({"availableSeats": 5}, [])
        await asyncio.sleep(0.05)
        publisher.publish({"availableSeats": 4}, [])
        await asyncio.sleep(0.05)
        return sent

    assert asyncio.run(run()) == [None, 4]
