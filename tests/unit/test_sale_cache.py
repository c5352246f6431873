"""`deployments.waiting_room.SaleCache` without a database: concurrent misses share one read, an entry
lives `ttl` seconds, and `forget` drops both the entry and a read that may have seen old settings."""
from __future__ import annotations

import asyncio

from deployments.waiting_room import SaleCache


class Reads:
    """A stand-in for the settings query: each read waits until the test answers it."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, asyncio.Future]] = []
        self.count = 0

    async def __call__(self, event_id: int):
        self.count += 1
        future = asyncio.get_running_loop().create_future()
        self.pending.append((event_id, future))
        return await future

    def answer(self, value) -> None:
        _, future = self.pending.pop(0)
        future.set_result(value)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_concurrent_misses_share_one_read_and_the_answer_is_kept_for_ttl():
    async def scenario():
        reads = Reads()
        cache = SaleCache(reads, ttl=60)
        waiting = [asyncio.create_task(cache.get(7)) for _ in range(50)]
        await settle()
        assert reads.count == 1
        reads.answer("sale-7")
        assert await asyncio.gather(*waiting) == ["sale-7"] * 50
        assert await cache.get(7) == "sale-7" and reads.count == 1  # cached
        other = asyncio.create_task(cache.get(8))  # another event has its own read
        await settle()
        assert reads.count == 2
        reads.answer(None)
        assert await other is None

    asyncio.run(scenario())


def test_an_entry_past_its_ttl_is_read_again():
    async def scenario():
        reads = Reads()
        cache = SaleCache(reads, ttl=0)
        first = asyncio.create_task(cache.get(7))
        await settle()
        reads.answer("old")
        assert await first == "old"
        second = asyncio.create_task(cache.get(7))
        await settle()
        assert reads.count == 2
        reads.answer("new")
        assert await second == "new"

    asyncio.run(scenario())


def test_forget_during_a_read_keeps_neither_the_entry_nor_that_reads_answer():
    async def scenario():
        reads = Reads()
        cache = SaleCache(reads, ttl=60)
        before = asyncio.create_task(cache.get(7))
        await settle()
        cache.forget(7)  # the organizer changed the event while the read was under way
        after = asyncio.create_task(cache.get(7))
        await settle()
        assert reads.count == 2  # a fresh read, not the one that may have seen the old settings
        reads.answer("old")
        reads.answer("new")
        assert await before == "old" and await after == "new"
        assert await cache.get(7) == "new" and reads.count == 2

    asyncio.run(scenario())


def test_a_failed_read_reaches_its_callers_and_the_next_caller_reads_again():
    async def scenario():
        reads = Reads()
        cache = SaleCache(reads, ttl=60)
        waiting = [asyncio.create_task(cache.get(7)) for _ in range(3)]
        await settle()
        reads.pending.pop(0)[1].set_exception(ConnectionError("database down"))
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)
        again = asyncio.create_task(cache.get(7))
        await settle()
        assert reads.count == 2
        reads.answer("sale-7")
        assert await again == "sale-7"

    asyncio.run(scenario())
