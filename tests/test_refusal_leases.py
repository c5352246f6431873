"""Refusal leases against the real system: a replica that holds one answers sold-out purchases itself,
and a seat freed by a cancellation, a release, an expiry or the organizer is still sellable at once.

Each test gives its category an actor that grants 3-second leases (the default is 0.05 s), so that a
lease would plainly still run when the seat comes free. Besides the Gateway replicas (over HTTP), the
test process holds a `CategoryActors` client of its own, a replica whose leases the test can see.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
import ray

from actors import NAMESPACE, category_actor_name
from actors.client import CategoryActors
from domain.inventory import HoldRequest, PurchaseRequest, Refusal
from tests.helpers import assert_consistent, new_category, person, replace_category_actor, wait_until
from tests.test_metrics import samples, scrape_until

pytestmark = pytest.mark.usefixtures("fast_users")

LEASE_S = 3.0
TUNABLES = {"hold_seconds": 300.0, "max_per_order": 10}
SOLD_OUT_BODY = {"statusCode": 400, "message": "Not enough tickets available. Only 0 tickets left",
                 "error": "Bad Request"}


def long_lease_actor(cat: dict, database_url: str, tunables: dict = TUNABLES) -> None:
    """Replace the category's actor (made when the category was) by one that grants LEASE_S leases."""
    replace_category_actor(cat["event"], cat["category"], database_url, tunables,
                           env={"TICKETING_REFUSAL_LEASE_S": str(LEASE_S)})


def post(http, path: str, user: dict, body: dict | None = None):
    r = http.post(path, json=body, headers=user["headers"])
    if r.status_code == 503:  # the replica still had the replaced actor's handle: it looks it up again
        r = http.post(path, json=body, headers=user["headers"])
    return r


class Replica:
    """A CategoryActors client in the test process: one more replica, whose leases the test can read."""

    def __init__(self, cat: dict, database_url: str) -> None:
        self.cat = cat
        self.client = CategoryActors(database_url, TUNABLES)

    def buy(self, user: dict, quantity: int = 1):
        return self._call(PurchaseRequest(user["id"], quantity))

    def hold(self, user: dict, quantity: int = 1):
        return self._call(HoldRequest(user["id"], quantity))

    def _call(self, request):
        return asyncio.run(self.client.call(self.cat["event"], self.cat["category"], request))

    def lease(self):
        held = self.client.leases.get((self.cat["event"], self.cat["category"]))
        return None if held is None else held[1]


@pytest.fixture()
def two_seats_sold(http, database_url):
    """A category of 2 seats with a long-lease actor, sold out by one order; a replica holding a lease."""
    cat = new_category(http, seats=2)
    long_lease_actor(cat, database_url)
    owner = person()
    r = post(http, "/api/orders", owner, {**cat["body"], "quantity": 2})
    assert r.status_code == 201, r.text
    replica = Replica(cat, database_url)
    refused = replica.buy(person())
    assert refused.refusal is Refusal.NOT_ENOUGH_TO_BUY and refused.available == 0
    assert replica.lease() is not None and replica.lease().seconds == LEASE_S
    return cat, owner, r.json()["id"], replica


def test_while_a_lease_runs_the_replica_answers_sold_out_purchases_as_the_actor_would(http, two_seats_sold):
    cat, _, _, replica = two_seats_sold
    # Over HTTP a sold-out purchase is answered as ever, whichever Gateway replica takes it (with a lease
    # or without one). Asked while the actor runs: a replica without a lease would ask the stopped actor.
    r = post(http, "/api/orders", person(), {**cat["body"], "quantity": 1})
    assert (r.status_code, r.json()) == (400, SOLD_OUT_BODY), r.text
    from_lease = replica.buy(person())
    # The actor is stopped: only an answer from the lease can still come back as "sold out".
    ray.kill(ray.get_actor(category_actor_name(cat["event"], cat["category"]), namespace=NAMESPACE),
             no_restart=False)
    assert replica.buy(person()) == from_lease
    assert (from_lease.refusal, from_lease.available) == (Refusal.NOT_ENOUGH_TO_BUY, 0)


def test_a_seat_freed_by_a_cancellation_is_sellable_at_once(http, db, two_seats_sold):
    cat, owner, order_id, replica = two_seats_sold
    for _ in range(6):  # the Gateway replicas take leases too
        r = post(http, "/api/orders", person(), {**cat["body"], "quantity": 1})
        assert (r.status_code, r.json()) == (400, SOLD_OUT_BODY), r.text
    r = post(http, f"/api/orders/{order_id}/cancel", owner)
    assert r.status_code == 201, r.text
    # The lease the replica took would still run, had the actor not held the cancellation back.
    assert replica.buy(person()).ok
    r = post(http, "/api/orders", person(), {**cat["body"], "quantity": 1})
    assert r.status_code == 201, r.text
    counters = assert_consistent(db, http, cat["event"], cat["category"])
    assert (counters["sold"], counters["held"]) == (2, 0)


def test_a_seat_freed_by_a_release_can_be_held_at_once(http, db, database_url):
    cat = new_category(http, seats=1)
    long_lease_actor(cat, database_url)
    holder = person()
    r = post(http, "/api/holds", holder, {**cat["body"], "quantity": 1})
    assert r.status_code == 201, r.text
    replica = Replica(cat, database_url)
    assert replica.buy(person()).refusal is Refusal.NOT_ENOUGH_TO_BUY
    assert replica.lease() is not None and replica.lease().holders == {holder["id"]}  # their holds: the actor's
    assert replica.hold(person()).refusal is Refusal.NOT_ENOUGH_TO_HOLD  # anyone else's: the lease's
    assert http.delete(f"/api/holds/{r.json()['lockId']}", headers=holder["headers"]).status_code == 200
    assert replica.hold(person()).ok
    counters = assert_consistent(db, http, cat["event"], cat["category"])
    assert (counters["sold"], counters["held"]) == (0, 1)


def test_a_seat_freed_by_an_expiry_is_sellable_at_once(http, database_url):
    cat = new_category(http, seats=1)
    long_lease_actor(cat, database_url, {"hold_seconds": 1.5, "max_per_order": 10})
    r = post(http, "/api/holds", person(), {**cat["body"], "quantity": 1})
    assert r.status_code == 201, r.text
    expires = datetime.fromisoformat(r.json()["expiresAt"])
    replica = Replica(cat, database_url)
    assert replica.buy(person()).refusal is Refusal.NOT_ENOUGH_TO_BUY
    lease = replica.lease()
    assert lease is not None and lease.seconds <= 1.5  # ends before the hold does, not after LEASE_S
    wait_until(lambda: datetime.now(timezone.utc) > expires, timeout=10, interval=0.05)
    assert replica.buy(person()).ok


def test_an_event_put_back_on_sale_sells_at_once(http, database_url):
    cat = new_category(http, seats=5)
    long_lease_actor(cat, database_url)
    org, event = cat["org"], f"/api/events/{cat['event']}"
    assert http.put(event, json={"isActive": False}, headers=org["headers"]).status_code == 200
    replica = Replica(cat, database_url)
    assert replica.buy(person()).refusal is Refusal.OFF_SALE
    assert replica.lease() is not None and replica.lease().closed is Refusal.OFF_SALE
    assert http.put(event, json={"isActive": True}, headers=org["headers"]).status_code == 200
    assert replica.buy(person()).ok


def test_refusals_a_replica_answers_from_a_lease_are_counted(ray_cluster, http, two_seats_sold):
    cat, *_ = two_seats_sold
    for _ in range(6):  # after its first refusal (if that), each Gateway replica answers from its lease
        assert post(http, "/api/orders", person(), {**cat["body"], "quantity": 1}).status_code == 400
    port = ray_cluster._private.worker.global_worker.node.metrics_export_port
    tags = {"event_id": str(cat["event"]), "category_id": str(cat["category"]), "kind": "purchase"}

    def counts(text: str) -> tuple[float, float]:
        return (sum(samples(text, "ray_ticketing_requests_refused_total", **tags)),
                sum(samples(text, "ray_ticketing_requests_refused_by_lease_total", **tags)))

    text = scrape_until(f"http://127.0.0.1:{port}/metrics", lambda t: sum(counts(t)) >= 7)
    by_actor, by_lease = counts(text)
    assert by_actor + by_lease == 7  # the test's replica's refusal and the six over HTTP, each once
    assert by_lease >= 2  # at most one per Gateway replica (at most four) reached the actor


def test_a_new_maximum_per_order_is_not_decided_while_a_lease_under_the_old_one_runs(two_seats_sold, database_url):
    """Buyers see one order of events: once the category decides with the new maximum, no replica still
    answers from a lease granted under the old one."""
    cat, _, _, replica = two_seats_sold
    actor = ray.get_actor(category_actor_name(cat["event"], cat["category"]), namespace=NAMESPACE)
    ray.get(actor.configure.remote({"max_per_order": 1}), timeout=60)
    other = Replica(cat, database_url)  # a replica without a lease: its request reaches the actor
    assert other.buy(person(), quantity=2).refusal is Refusal.BAD_QUANTITY  # decided under the new maximum
    assert replica.buy(person(), quantity=2).refusal is Refusal.BAD_QUANTITY  # so no lease may say otherwise
