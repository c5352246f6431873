"""One socket (deployments/realtime_session.py): its outbox's bound, and how a session ends. Pure asyncio."""
from __future__ import annotations

import asyncio

from deployments.realtime_session import TOO_SLOW, Outbox, Session


def run(coro):
    return asyncio.run(coro)


def test_a_full_outbox_ends_the_session_as_a_laggard():
    async def scenario():
        outbox = Outbox(limit=2)
        assert outbox.put("1") and outbox.put("2")
        assert not outbox.put("3")
        session = Session("a", 1, outbox=outbox)
        sent = []

        async def send(text):
            sent.append(text)
        ended = session.attach(send)
        assert ended.done() and ended.result() in TOO_SLOW
        assert sent == []
    run(scenario())


def test_a_send_that_fails_ends_the_session():
    async def scenario():
        session = Session("a", 1)

        async def gone(text):
            raise RuntimeError("socket closed")
        ended = session.attach(gone)
        session.send("connected", {})
        assert ended.done() and ended.result().startswith("send failed")
    run(scenario())


def test_detach_cancels_a_blocked_send_even_before_its_drain_started():
    async def scenario():
        session = Session("a", 1)
        gate = asyncio.Event()
        sent = []

        async def send(text):
            await gate.wait()
            sent.append(text)
        session.attach(send)
        session.send("connected", {})  # blocks: a drain task is created but has not run yet
        blocked = session.blocked
        assert blocked is not None
        session.detach()  # the socket went away at once
        gate.set()
        for _ in range(10):
            await asyncio.sleep(0)
        assert blocked.cancelled() and sent == []
    run(scenario())
