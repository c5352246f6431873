"""The per-replica hub (deployments/realtime_hub.py): rooms, coalescing, notices, fan-out to the sockets
(deployments/realtime_session.py), the watchdog, laggards. Pure asyncio."""
from __future__ import annotations

import asyncio
import json

from deployments.realtime_hub import PASS_STEP, Hub
from deployments.realtime_session import TOO_SLOW, Session


def figures(event_id: int, category_id: int, version: int, available: int) -> dict:
    return {"eventId": event_id, "categoryId": category_id, "totalSeats": 10, "soldSeats": 0,
            "heldSeats": 10 - available, "availableSeats": available, "version": version}


def drain(session: Session) -> list[dict]:
    return [json.loads(text) for text in session.outbox.take()]


def deliver_now(hub: Hub, result: dict) -> None:
    """One poll result, then a whole fan-out pass at once (the hub's loop does it in steps)."""
    hub.deliver(result)
    for session in list(hub.sessions):
        hub.catch_up(session)


def run(coro):
    return asyncio.run(coro)


def fed_poll():
    """A poll function that answers with what the test puts in the returned queue, one result a call."""
    results: asyncio.Queue = asyncio.Queue()

    async def poll(epoch, since):
        return await results.get()
    return results, poll


async def _hub_with(*sessions: Session) -> Hub:
    async def never(epoch, since):
        raise AssertionError("not polled in these tests")
    hub = Hub(never)
    for session in sessions:
        hub.add(session)
    return hub


def test_updates_reach_only_the_room_and_coalesce_per_category():
    async def scenario():
        inside, outside = Session("a", 1), Session("b", 2)
        hub = await _hub_with(inside, outside)
        hub.join(inside, 5)
        deliver_now(hub, {"epoch": "e", "version": 2, "notices": [],
                     "snapshots": [figures(5, 1, 1, 9), figures(6, 1, 2, 3)]})
        deliver_now(hub, {"epoch": "e", "version": 3, "notices": [], "snapshots": [figures(5, 1, 3, 7)]})
        got = drain(inside)
        assert [(m["event"], m["data"]["availableTickets"]) for m in got] == [("availability-update", 7)]
        assert drain(outside) == []
    run(scenario())


def test_older_figures_never_replace_newer_ones():
    async def scenario():
        session = Session("a", 1)
        hub = await _hub_with(session)
        hub.join(session, 5)
        deliver_now(hub, {"epoch": "e", "version": 4, "notices": [], "snapshots": [figures(5, 1, 4, 6)]})
        drain(session)
        # A join read older figures (version 2) after the loop had delivered version 4: dropped.
        session.outbox.put_update((5, 1), hub.stamp("e", 2), "stale")
        assert drain(session) == []
        # After leaving and joining again, the room's current figures are sent afresh.
        hub.leave(session, 5)
        hub.join(session, 5)
        session.outbox.put_update((5, 1), hub.stamp("e", 4), json.dumps({"event": "x", "data": {}}))
        assert len(drain(session)) == 1
    run(scenario())


def test_broadcaster_restart_starts_a_new_generation():
    async def scenario():
        session = Session("a", 1)
        hub = await _hub_with(session)
        hub.join(session, 5)
        deliver_now(hub, {"epoch": "old", "version": 50, "notices": [], "snapshots": [figures(5, 1, 50, 6)]})
        drain(session)
        deliver_now(hub, {"epoch": "new", "version": 1, "notices": [], "snapshots": [figures(5, 1, 1, 4)]})
        assert [m["data"]["availableTickets"] for m in drain(session)] == [4]
    run(scenario())


def test_a_broadcaster_restart_while_the_replica_has_no_socket_leaves_no_stale_figures():
    """The replica goes idle (no socket: it stops polling), the broadcaster restarts meanwhile and its
    versions start again. The next socket gets the new figures, and later updates are not dropped as
    older than the ones from before the restart."""
    async def scenario():
        results, poll = fed_poll()
        hub = Hub(poll)
        before, after = Session("a", 1), Session("b", 2)
        hub.add(before)
        hub.join(before, 5)
        hub.start()
        try:
            await results.put({"epoch": "old", "version": 500, "notices": [], "snapshots": [figures(5, 1, 500, 9)]})
            await asyncio.wait_for(hub.synced.wait(), 5)
            hub.remove(before)
            # the long poll in flight answers (nothing new); then the loop, with no socket, stops polling
            await results.put({"epoch": "old", "version": 500, "notices": [], "snapshots": []})
            for _ in range(100):
                await asyncio.sleep(0)
            got = []

            async def send(text):
                got.append(json.loads(text)["data"]["availableTickets"])
            after.attach(send)
            hub.add(after)  # the broadcaster restarted meanwhile: category 5/1 has not published again yet
            await results.put({"epoch": "new", "version": 1, "notices": [], "snapshots": [figures(5, 2, 1, 3)]})
            await asyncio.wait_for(hub.synced.wait(), 5)
            hub.join(after, 5)
            hub.catch_up(after)
            await results.put({"epoch": "new", "version": 2, "notices": [], "snapshots": [figures(5, 1, 2, 1)]})
            for _ in range(1000):
                if got and got[-1] == 1:
                    break
                await asyncio.sleep(0)
        finally:
            await hub.stop()
        assert 9 not in got and got[-1] == 1  # never the figures from before the restart; the sale arrived
    run(scenario())


def test_notices_go_to_every_socket_of_the_user_but_not_on_first_sync():
    async def scenario():
        tab1, tab2, other = Session("a", 1), Session("b", 1), Session("c", 2)
        hub = await _hub_with(tab1, tab2, other)
        notice = ("order-completed", 1, {"orderId": "9"})
        deliver_now(hub, {"epoch": "e", "version": 1, "snapshots": [], "notices": [notice]})  # history
        assert drain(tab1) == []
        deliver_now(hub, {"epoch": "e", "version": 2, "snapshots": [], "notices": [notice]})
        for tab in (tab1, tab2):
            assert drain(tab) == [{"event": "order-completed", "data": {"orderId": "9"}}]
        assert drain(other) == []
    run(scenario())


def test_queue_figures_that_fail_cost_the_sockets_nothing_else_of_the_poll():
    """The next poll starts after this one's version: what one poll brings is delivered even when its
    queue figures cannot be (a queue actor of another version, say)."""
    async def scenario():
        def broken(queues):
            raise KeyError("shopping")
        session = Session("a", 1)
        hub = Hub(None, on_queues=broken)
        hub.add(session)
        hub.join(session, 5)
        notice = ("order-completed", 1, {"orderId": "9"})
        deliver_now(hub, {"epoch": "e", "version": 1, "snapshots": [], "notices": [], "queues": [{"eventId": 5}]})
        assert hub.synced.is_set()
        deliver_now(hub, {"epoch": "e", "version": 2, "snapshots": [figures(5, 1, 2, 4)], "notices": [notice],
                          "queues": [{"eventId": 5}]})
        got = drain(session)
        assert {"event": "order-completed", "data": {"orderId": "9"}} in got
        assert any(m["event"] == "availability-update" for m in got)
    run(scenario())


def test_remove_forgets_the_session_everywhere():
    async def scenario():
        session = Session("a", 1)
        hub = await _hub_with(session)
        hub.join(session, 5)
        hub.remove(session)
        assert hub.rooms == {} and hub.users == {} and hub.sessions == set()
    run(scenario())


def test_a_free_socket_is_sent_to_in_the_callers_step_without_a_task():
    async def scenario():
        session = Session("a", 1)
        hub = await _hub_with(session)
        hub.join(session, 5)
        received = []

        async def send(text):
            received.append(json.loads(text)["event"])
        session.attach(send)
        session.send("connected", {})
        deliver_now(hub, {"epoch": "e", "version": 1, "notices": [], "snapshots": [figures(5, 1, 1, 9)]})
        # No await in between: both went out synchronously, and no task was needed.
        assert received == ["connected", "availability-update"]
        assert session.draining is None
    run(scenario())


def test_a_blocked_socket_queues_coalesced_and_does_not_block_another():
    async def scenario():
        fast, slow = Session("f", 1), Session("s", 2)
        hub = await _hub_with(fast, slow)
        for session in (fast, slow):
            hub.join(session, 5)
        unblock = asyncio.Event()
        got_fast, got_slow = [], []

        async def send_fast(text):
            got_fast.append(json.loads(text))

        async def send_slow(text):
            await unblock.wait()
            got_slow.append(json.loads(text))
        fast.attach(send_fast)
        slow.attach(send_slow)
        fast.send("connected", {})
        slow.send("connected", {})  # blocks: the rest of this send moves to a task
        assert slow.draining is not None
        for version, available in ((1, 9), (2, 8), (3, 7)):
            deliver_now(hub, {"epoch": "e", "version": version, "notices": [],
                         "snapshots": [figures(5, 1, version, available)]})
        assert [m["data"].get("availableTickets") for m in got_fast] == [None, 9, 8, 7]
        assert got_slow == []
        unblock.set()
        await asyncio.wait_for(slow.draining, 5)
        # In order, and the three updates queued meanwhile arrive as the newest one only.
        assert [(m["event"], m["data"].get("availableTickets")) for m in got_slow] == [
            ("connected", None), ("availability-update", 7)]
        assert slow.draining is None and not slow.ended.done()
    run(scenario())


def test_watchdog_ends_a_socket_whose_send_stalls():
    async def scenario():
        async def idle_poll(epoch, since):
            await asyncio.Event().wait()
        hub = Hub(idle_poll, send_timeout_s=0.05, watch_every_s=0.01)
        stuck, fine = Session("s", 1), Session("f", 2)
        for session in (stuck, fine):
            hub.add(session)
        hub.start()
        delivered = []

        async def never_returns(text):
            await asyncio.Event().wait()

        async def records(text):
            delivered.append(text)
        stuck_ended, fine_ended = stuck.attach(never_returns), fine.attach(records)
        stuck.send("connected", {})
        fine.send("connected", {})
        try:
            reason = await asyncio.wait_for(stuck_ended, 5)
        finally:
            await hub.stop()
        assert reason == TOO_SLOW[1]
        assert not fine_ended.done() and len(delivered) == 1
    run(scenario())


def test_fan_out_loop_gives_each_socket_the_newest_figures_when_the_pass_reaches_it():
    async def scenario():
        results, poll = fed_poll()
        hub = Hub(poll)
        sessions = [Session(str(i), i) for i in range(3 * PASS_STEP)]
        got: dict[str, list[int]] = {s.id: [] for s in sessions}
        for session in sessions:
            hub.add(session)
            hub.join(session, 5)

            async def send(text, sid=session.id):
                got[sid].append(json.loads(text)["data"]["availableTickets"])
            session.attach(send)
        hub.start()
        try:
            await results.put({"epoch": "e", "version": 1, "notices": [], "snapshots": [figures(5, 1, 1, 9)]})
            while not any(got.values()):  # the first pass has begun (it yields after each step)
                await asyncio.sleep(0)
            await results.put({"epoch": "e", "version": 2, "notices": [], "snapshots": [figures(5, 1, 2, 8)]})
            for _ in range(1000):
                if all(seen and seen[-1] == 8 for seen in got.values()):
                    break
                await asyncio.sleep(0)
        finally:
            await hub.stop()
        assert all(seen[-1] == 8 for seen in got.values())
        # The second figures arrived during the first pass: the sockets it had not reached yet skipped
        # straight to them, and nobody got anything twice or out of order.
        assert sum(seen == [8] for seen in got.values()) >= PASS_STEP
        assert all(seen in ([9, 8], [8]) for seen in got.values())
    run(scenario())


def test_laggards_closed_are_counted_by_the_hub():
    async def scenario():
        hub = await _hub_with(Session("a", 1))
        assert hub.stats()["laggardsClosed"] == 0
        hub.closed_laggard()
        assert hub.stats()["laggardsClosed"] == 1
    run(scenario())


def test_a_new_socket_waits_for_the_first_poll_so_the_next_notice_reaches_it():
    async def scenario():
        answers, poll = fed_poll()
        hub = Hub(poll)
        session = Session("a", 7)
        hub.add(session)
        hub.start()
        synced = asyncio.ensure_future(hub.wait_synced(5.0))
        await asyncio.sleep(0.05)
        assert not synced.done()  # the first poll has not answered: not yet in sync
        # The first answer's notices are old news (before the socket was told it is connected)...
        await answers.put({"epoch": "e", "version": 3, "snapshots": [],
                           "notices": [("order-completed", 7, {"orderId": 1})]})
        await asyncio.wait_for(synced, 1.0)
        # ...every notice after it reaches the user's socket.
        await answers.put({"epoch": "e", "version": 4, "snapshots": [],
                           "notices": [("order-completed", 7, {"orderId": 2})]})
        got: list[dict] = []
        for _ in range(100):  # until the loop has delivered it (bounded)
            got += drain(session)
            if got:
                break
            await asyncio.sleep(0.01)
        assert [m["data"]["orderId"] for m in got] == [2]
        # With no socket left the loop stops polling; the next socket waits for a new first answer.
        hub.remove(session)
        await answers.put({"epoch": "e", "version": 5, "snapshots": [], "notices": []})
        await asyncio.sleep(0.05)
        assert not hub.synced.is_set()
        await hub.stop()

    run(scenario())


def test_waiting_for_sync_gives_up_when_the_broadcaster_does_not_answer():
    async def scenario():
        async def silent(epoch, since):
            await asyncio.sleep(3600)

        hub = Hub(silent)
        hub.add(Session("a", 1))
        hub.start()
        await asyncio.wait_for(hub.wait_synced(0.05), 1.0)  # returns, does not raise
        assert not hub.synced.is_set()
        await hub.stop()

    run(scenario())
