"""Catalog changes announced to every ingress replica: PostgreSQL LISTEN/NOTIFY on one channel.

An organizer's request (create or edit an event, steer its queue) reaches one replica. The others learn
of it from the notice within milliseconds, instead of at their cache's next expiry or from the first
buyer, so they connect to the new categories' actors and re-read the event's sale settings before buyers
arrive. A lost notice costs only that: the caches still expire after a second, and an actor is still
found by name on first use.
"""
from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

CHANNEL = "ticketing_catalog"


async def announce(engine: AsyncEngine, event_id: int) -> None:
    """Tell every listener that `event_id` changed (delivered when this statement commits)."""
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_notify(:channel, :event)"), {"channel": CHANNEL, "event": str(event_id)})


async def changed_events(url: str) -> AsyncIterator[int]:
    """The id of each event announced from now on, over a connection of its own, until that connection
    fails (the caller listens again)."""
    conn = await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True)
    async with conn:
        await conn.execute(f"LISTEN {CHANNEL}")
        async for notice in conn.notifies():
            if notice.payload.isdigit():
                yield int(notice.payload)


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) in the form psycopg itself takes."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
