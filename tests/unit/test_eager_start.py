"""Starting a coroutine in the caller's step (deployments/eager_start.py). Pure asyncio."""
from __future__ import annotations

import asyncio

from deployments.eager_start import run_until_blocked


def run(coro):
    return asyncio.run(coro)


def test_run_until_blocked_finishes_a_blocked_coroutine_with_its_outcome():
    async def scenario():
        gate = asyncio.get_running_loop().create_future()
        steps = []

        async def work():
            steps.append("start")
            steps.append(await gate)
            await asyncio.sleep(0)
            steps.append("end")
        rest = run_until_blocked(work())
        assert steps == ["start"] and rest is not None
        gate.set_result("resumed")
        await asyncio.wait_for(rest, 5)
        assert steps == ["start", "resumed", "end"]

        async def failing():
            await asyncio.sleep(0)
            raise ValueError("boom")
        rest = run_until_blocked(failing())
        try:
            await rest
        except ValueError as exc:
            assert str(exc) == "boom"
        else:
            raise AssertionError("the exception was lost")
    run(scenario())
