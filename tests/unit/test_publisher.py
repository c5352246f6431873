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
