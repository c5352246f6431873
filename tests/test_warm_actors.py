"""No cold start: category actors on sale are created and loaded before their first buyer."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import ray

from actors import NAMESPACE, category_actor_name
from tests.helpers import create_event, register


def running_actor(event_id: int, category_id: int):
    try:
        return ray.get_actor(category_actor_name(event_id, category_id), namespace=NAMESPACE)
    except ValueError:
        return None


def test_creating_an_event_starts_and_loads_the_actors_of_its_categories(http):
    org = register(http, "organizer")
    event = create_event(http, org, seats=7, ticketCategories=[
        {"categoryName": "Floor", "price": "10.00", "totalSeats": 7},
        {"categoryName": "Balcony", "price": "5.00", "totalSeats": 3},
    ])
    for category in event["ticketCategories"]:  # answered only once they are up: no wait needed
        actor = running_actor(event["idEvent"], category["id"])
        assert actor is not None, category
        figures = ray.get(actor.figures.remote())
        assert (figures["totalSeats"], figures["availableSeats"]) == (category["totalSeats"], category["totalSeats"])


def test_a_past_event_gets_no_actor_and_an_edit_that_puts_it_on_sale_starts_one(http):
    org = register(http, "organizer")
    past = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    r = http.post("/api/events", json={"eventName": "Yesterday", "eventCategory": "music", "eventDate": past,
                                       "location": "Arena",
                                       "ticketCategories": [{"categoryName": "G", "price": "5.00", "totalSeats": 5}]},
                  headers=org["headers"])
    if r.status_code != 201:  # the API may refuse past dates; then there is nothing to check here
        assert r.status_code == 400, r.text
        return
    event = r.json()
    category = event["ticketCategories"][0]["id"]
    assert running_actor(event["idEvent"], category) is None
    future = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat()
    r = http.put(f"/api/events/{event['idEvent']}", json={"eventDate": future}, headers=org["headers"])
    assert r.status_code == 200, r.text
    assert running_actor(event["idEvent"], category) is not None


def test_warming_after_a_restart_starts_the_categories_on_sale_and_no_other(http, database_url):
    """What each Gateway replica runs when it starts (CategoryActors.warm_on_sale): the categories on
    sale, read from the database, get their actors back; a deleted event's do not. (The whole of
    warm_on_sale would warm every category of this test session, so its two steps are checked here.)"""
    from actors.client import CategoryActors
    from storage.database import make_engine
    from storage.events_store import on_sale_categories
    from tests.helpers import wait_until

    org = register(http, "organizer")
    on_sale = create_event(http, org, seats=4)
    deleted = create_event(http, org, seats=4)
    assert http.delete(f"/api/events/{deleted['idEvent']}", headers=org["headers"]).status_code == 200
    pairs = [(e["idEvent"], e["ticketCategories"][0]["id"]) for e in (on_sale, deleted)]
    for pair in pairs:  # as after a restart of the whole system: no actor left
        actor = running_actor(*pair)
        if actor is not None:
            ray.kill(actor, no_restart=True)
    wait_until(lambda: all(running_actor(*p) is None for p in pairs), timeout=60)

    async def restart() -> list:
        engine = make_engine(database_url)
        try:
            keys = await on_sale_categories(engine, datetime.now(timezone.utc))
        finally:
            await engine.dispose()
        client = CategoryActors(database_url, {"hold_seconds": 300, "max_per_order": 10})
        for event_id, category_id in keys:
            if (event_id, category_id) in pairs:
                await client.warm(event_id, [category_id])
        return keys

    keys = asyncio.run(restart())
    assert pairs[0] in keys and pairs[1] not in keys
    assert running_actor(*pairs[0]) is not None
    assert running_actor(*pairs[1]) is None
