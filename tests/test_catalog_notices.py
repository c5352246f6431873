"""Catalog changes reach every ingress replica (storage.catalog_notices): an announcement is delivered to
every listener, and the organizer's routes that change what buyers may do announce the event (real
PostgreSQL, real HTTP through Serve)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from storage.catalog_notices import CHANNEL, announce, changed_events, libpq_url
from storage.database import make_engine
from tests.helpers import create_event, person

pytestmark = pytest.mark.usefixtures("fast_users")  # person() mints users straight into the database


def test_an_announcement_reaches_every_listener(database_url):
    async def scenario() -> tuple[list[int], list[int]]:
        streams = [changed_events(database_url) for _ in range(2)]
        # Start both listening: each waits for its first notice in a task of its own.
        firsts = [asyncio.ensure_future(anext(stream)) for stream in streams]
        engine = make_engine(database_url, pool_size=1)
        try:
            for _ in range(50):  # LISTEN runs when each stream starts: announce until both hear
                await announce(engine, 101)
                await asyncio.wait(firsts, timeout=0.1)
                if all(f.done() for f in firsts):
                    break
            heard = [[f.result()] for f in firsts]
            await announce(engine, 202)
            for stream, got in zip(streams, heard):
                while got[-1] != 202:
                    got.append(await asyncio.wait_for(anext(stream), 10))
            return heard[0], heard[1]
        finally:
            for stream in streams:
                await stream.aclose()
            await engine.dispose()

    first, second = asyncio.run(scenario())
    for heard in (first, second):
        assert heard[0] == 101 and heard[-1] == 202 and set(heard) <= {101, 202}


def listener(database_url: str) -> psycopg.Connection:
    conn = psycopg.connect(libpq_url(database_url), autocommit=True)
    conn.execute(f"LISTEN {CHANNEL}")
    return conn


def heard(conn: psycopg.Connection) -> set[int]:
    return {int(n.payload) for n in conn.notifies(timeout=5, stop_after=1)}


def test_the_organizers_changes_are_announced(http, database_url):
    org = person("organizer")
    conn = listener(database_url)
    try:
        event = create_event(http, org)
        assert event["idEvent"] in heard(conn)

        starts = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
        r = http.put(f"/api/events/{event['idEvent']}", json={"saleStartsAt": starts}, headers=org["headers"])
        assert r.status_code == 200, r.text
        assert event["idEvent"] in heard(conn)

        r = http.put(f"/api/events/{event['idEvent']}", json={"queueEnabled": True, "maxShoppers": 5},
                     headers=org["headers"])
        assert r.status_code == 200, r.text
        conn.notifies(timeout=0.5)  # drain this edit's notice
        r = http.patch(f"/api/events/{event['idEvent']}/queue", json={"queuePaused": True}, headers=org["headers"])
        assert r.status_code == 200, r.text
        assert event["idEvent"] in heard(conn)
    finally:
        conn.close()


def test_a_refused_change_announces_nothing(http, database_url):
    org, stranger = person("organizer"), person("organizer")
    event = create_event(http, org)
    conn = listener(database_url)
    try:
        r = http.put(f"/api/events/{event['idEvent']}", json={"eventName": "Not yours"}, headers=stranger["headers"])
        assert r.status_code == 403, r.text
        assert list(conn.notifies(timeout=1)) == []
    finally:
        conn.close()


def test_a_follower_drops_the_cached_settings_of_an_announced_event(database_url, data_dir):
    from deployments.waiting_room import QueueDesk, SaleCache

    async def scenario() -> tuple[set[int], list[int]]:
        desk = QueueDesk(database_url, str(data_dir))

        async def read(event_id: int):
            return f"settings of {event_id}"

        desk.sales = SaleCache(read, ttl=3600)  # only a notice can make it read again
        await desk.sales.get(41)
        await desk.sales.get(42)
        told: list[int] = []

        async def then(event_id: int) -> None:
            told.append(event_id)

        follower = asyncio.ensure_future(desk.follow_catalog(database_url, then))
        engine = make_engine(database_url, pool_size=1)
        try:
            for _ in range(100):  # the follower starts listening in its own time: announce until it hears
                await announce(engine, 42)
                await asyncio.sleep(0.1)
                if 42 not in desk.sales.entries:
                    break
            await asyncio.sleep(0.1)
            return set(desk.sales.entries), told
        finally:
            follower.cancel()
            await engine.dispose()
            await desk.engine.dispose()

    cached, told = asyncio.run(scenario())
    assert cached == {41}  # the other event's settings stay cached
    assert told and set(told) == {42}
