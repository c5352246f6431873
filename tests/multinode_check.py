"""Multi-node check: two Ray nodes on this machine, category actors on both, the event's queue actor on
the second, one PostgreSQL.

Run by tests/test_multinode.py in its own process (a Ray cluster is per process, and the test session
already has one):  DATABASE_URL=... python -m tests.multinode_check
Prints one JSON report line last; exits 1 if a check fails.

Buyers run as Ray tasks pinned to each node, so every category actor receives calls from its own
node and from the other one, as it would from Serve replicas spread over a cluster.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from sqlalchemy import create_engine

SEATS = 12
BUYERS_PER_NODE = 20
TUNABLES = {"hold_seconds": 300.0, "max_per_order": 4}


def pinned(node_id: str) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


async def setup(db_url: str) -> tuple[int, list[int], list[int]]:
    """One organizer, buyers, one event with two categories (rows only: no HTTP in this check)."""
    from storage.database import make_engine
    from storage.events_store import create_event
    from storage.users_store import create_user

    engine = make_engine(db_url, pool_size=2)
    tag = uuid.uuid4().hex[:8]
    organizer = await create_user(engine, f"mn_org_{tag}", "not-a-login", "organizer")
    buyers = [(await create_user(engine, f"mn_buyer_{tag}_{i}", "not-a-login", "assistant")).id
              for i in range(2 * BUYERS_PER_NODE)]
    event = await create_event(
        engine,
        {"name": f"Multinode {tag}", "category": "music", "location": "Arena",
         "event_date": datetime.now(timezone.utc) + timedelta(days=30),
         "queue_enabled": True, "admission_per_minute": 60_000},
        [{"name": "Floor", "price": 40, "total_seats": SEATS}, {"name": "Balcony", "price": 60, "total_seats": SEATS},
         {"name": "Standing", "price": 20, "total_seats": SEATS}],  # left to Ray's default placement
        organizer.id,
    )
    await engine.dispose()
    return event.id, [c.id for c in event.ticket_categories], buyers


@ray.remote(num_cpus=1)
def buyers_on_this_node(db_url: str, event_id: int, category_ids: list[int], user_ids: list[int], seed: int,
                        unplaced: int | None = None) -> dict:
    """Each buyer holds 1-3 seats in a random category, then buys with the hold or releases it."""
    from actors.client import CategoryActors
    from actors.queues import EventQueues
    from domain.inventory import ConfirmRequest, HoldRequest, PurchaseRequest, ReleaseRequest

    async def run() -> dict:
        rng = random.Random(seed)
        # Every buyer joins the event's queue first (its actor runs on the other node for half of them).
        joined = await asyncio.gather(*(EventQueues(db_url).join(event_id, u) for u in user_ids))
        places = {str(u): entry.place for u, (entry, _) in zip(user_ids, joined)}
        client = CategoryActors(db_url, TUNABLES)
        plan = [(user, rng.choice(category_ids), rng.randint(1, 3), rng.random()) for user in user_ids]
        holds = await asyncio.gather(*(client.call(event_id, c, HoldRequest(u, q)) for u, c, q, _ in plan))
        follow_ups = []
        for (user, category, quantity, dice), hold in zip(plan, holds):
            if not hold.ok:
                continue
            lock = hold.hold.id
            request = ConfirmRequest(user, lock, quantity) if dice < 0.6 else ReleaseRequest(user, lock)
            follow_ups.append((category, request))
        results = await asyncio.gather(*(client.call(event_id, c, r) for c, r in follow_ups))
        # Then walk-up buyers without a hold, straight to purchase.
        walk_ups = [(rng.choice(category_ids), PurchaseRequest(u, 1)) for u, *_ in plan[: len(plan) // 2]]
        purchases = await asyncio.gather(*(client.call(event_id, c, r) for c, r in walk_ups))
        default_node = None
        if unplaced is not None:  # where does Ray put an actor that this node's client creates?
            handle = await client.handle(event_id, unplaced)
            default_node = await handle.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id())
        sold = {c: 0 for c in category_ids}
        for (category, request), result in list(zip(follow_ups, results)) + list(zip(walk_ups, purchases)):
            if result.ok and result.order is not None:
                sold[category] += result.order.quantity
        return {
            "node": ray.get_runtime_context().get_node_id(),
            "holdsGranted": sum(1 for h in holds if h.ok),
            "holdsRefused": sum(1 for h in holds if not h.ok),
            "refusals": sorted({h.refusal.value for h in holds if not h.ok} |
                               {p.refusal.value for p in purchases if not p.ok}),
            "soldByCategory": {str(c): n for c, n in sold.items()},
            "defaultPlacement": default_node,
            "places": places,
        }

    return asyncio.run(run())


def node_of(handle) -> str:
    return ray.get(handle.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))


def main() -> int:
    from actors import NAMESPACE, category_actor_name, queue_actor_name
    from actors.category import TicketCategory
    from actors.queue import EventQueue
    from storage.database import normalise_url

    db_url = normalise_url(os.environ["DATABASE_URL"])
    event_id, category_ids, buyers = asyncio.run(setup(db_url))
    category_ids, unplaced = category_ids[:2], category_ids[2]

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": 128 * 2**20})
    cluster.add_node(num_cpus=1, object_store_memory=128 * 2**20)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        assert len(nodes) == 2, nodes
        head = next(n["NodeID"] for n in ray.nodes() if "node:__internal_head__" in n["Resources"])
        # One category actor per node, under the names the deployments look up (get_if_exists finds them).
        for category_id, node in zip(category_ids, nodes):
            TicketCategory.options(name=category_actor_name(event_id, category_id), namespace=NAMESPACE,
                                   lifetime="detached", get_if_exists=True, scheduling_strategy=pinned(node),
                                   ).remote(db_url, event_id, category_id, TUNABLES)
        handles = {c: ray.get_actor(category_actor_name(event_id, c), namespace=NAMESPACE) for c in category_ids}
        placement = {str(c): node_of(h) for c, h in handles.items()}
        assert set(placement.values()) == set(nodes), placement  # one actor on each node
        other = next(n for n in nodes if n != head)
        queue = EventQueue.options(name=queue_actor_name(event_id), namespace=NAMESPACE, lifetime="detached",
                                   get_if_exists=True, scheduling_strategy=pinned(other)).remote(db_url, event_id)
        placement["queue"] = node_of(queue)
        assert placement["queue"] == other, placement

        half = len(buyers) // 2
        runs = ray.get([
            buyers_on_this_node.options(scheduling_strategy=pinned(node)).remote(
                db_url, event_id, category_ids, group, seed, unplaced if seed == 1 else None)
            for seed, (node, group) in enumerate(zip(nodes, (buyers[:half], buyers[half:])))
        ])
        assert {r["node"] for r in runs} == set(nodes), runs  # buyers really ran on both nodes
        figures = {str(c): ray.get(h.figures.remote()) for c, h in handles.items()}
        deadline = time.monotonic() + 60  # the queue admits everyone (60,000 a minute) in place order
        while ray.get(queue.figures.remote()).admitted < len(buyers) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        ray.shutdown()
        cluster.shutdown()

    report = {"nodes": nodes, "head": head, "placement": placement, "runs": runs, "figures": figures,
              "database": check_database(db_url, event_id, category_ids, runs, figures),
              "queue": check_queue(db_url, event_id, runs)}
    print(json.dumps(report))
    return 0


def check_database(db_url: str, event_id: int, category_ids: list[int], runs: list[dict], figures: dict) -> dict:
    """The database is the truth: counters match the rows, nothing oversold, buyers were told the truth."""
    from ticketing.invariants import seat_ledger

    engine = create_engine(db_url)
    out = {}
    with engine.connect() as conn:
        for c in category_ids:
            ledger = seat_ledger(conn, c)
            total, held, sold = ledger.total, ledger.held, ledger.sold
            told = sum(r["soldByCategory"][str(c)] for r in runs)
            assert sold == ledger.sold_rows == told, (c, sold, ledger.sold_rows, told)
            assert held == ledger.held_rows, (c, held, ledger.held_rows)
            assert sold + held <= total and ledger.ok, (c, ledger)  # nothing oversold
            actor = figures[str(c)]
            assert (actor["soldSeats"], actor["heldSeats"]) == (sold, held), (c, actor, sold, held)
            out[str(c)] = {"totalSeats": total, "soldSeats": sold, "heldSeats": held}
    engine.dispose()
    return out


def check_queue(db_url: str, event_id: int, runs: list[dict]) -> dict:
    """Joins from both nodes got distinct places 1..n, as the database says, all admitted in order."""
    from sqlalchemy import text

    told = {user: place for r in runs for user, place in r["places"].items()}
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT user_id, place, status, admitted_at FROM queue_entries "
                                 "WHERE event_id = :e ORDER BY place"), {"e": event_id}).all()
    engine.dispose()
    assert sorted(told.values()) == list(range(1, len(told) + 1)), told
    assert {str(r.user_id): r.place for r in rows} == told, rows
    assert all(r.status == "admitted" for r in rows), rows
    assert [r.admitted_at for r in rows] == sorted(r.admitted_at for r in rows), rows
    return {"places": len(rows), "admitted": len(rows)}


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as exc:
        print(f"CHECK FAILED: {exc!r}", file=sys.stderr)
        sys.exit(1)
