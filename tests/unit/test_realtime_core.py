"""The realtime core's rules for one socket (deployments/realtime.py), with stand-ins for what lies beyond
the replica (the waiting room's pass check, the category actors): the order of events on one socket."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone

from deployments.realtime import RealtimeCore
from deployments.realtime_session import Session
from domain.auth import Principal
from domain.inventory import ActiveHold, HoldRequest, Outcome, ReleaseSessionRequest


def test_a_socket_that_closes_while_its_lock_is_checked_leaves_no_hold_behind(tmp_path):
    """Socket.IO runs a message's handler to its end even when the socket closes meanwhile. A lock whose
    pass check was under way when the socket closed must not make a hold that nothing would release."""
    async def scenario():
        core = RealtimeCore("postgresql+psycopg://nobody@127.0.0.1:9/none", str(tmp_path))
        checking, go_on = asyncio.Event(), asyncio.Event()
        sent: list[object] = []

        async def check_may_shop(user_id, event_id, queue_pass, carrier):
            checking.set()
            await go_on.wait()

        async def call(event_id, category_id, request):
            sent.append(request)
            now = datetime.now(timezone.utc)
            return Outcome(hold=ActiveHold(uuid.uuid4(), request.user_id, 1, now, now), available=9)

        core.desk.check_may_shop, core.categories.call = check_may_shop, call
        session = Session("s1", 7)
        principal = Principal(user_id=7, username="buyer", role="assistant")
        gone = asyncio.get_running_loop().create_future()

        async def sender(text):
            pass
        running = asyncio.ensure_future(core.run(session, principal, sender, gone))
        lock = asyncio.ensure_future(core.handle_event(session, "lock-tickets",
                                                       {"eventId": 1, "categoryId": 2, "quantity": 1}))
        await checking.wait()
        gone.set_result(None)  # the client goes away
        await running
        go_on.set()
        await lock
        await asyncio.gather(*core.cleanups)
        holds = [r for r in sent if isinstance(r, HoldRequest)]
        released = [r for r in sent if isinstance(r, ReleaseSessionRequest)]
        assert not holds or released, sent
    asyncio.run(scenario())
