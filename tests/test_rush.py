"""A rush: a few hundred concurrent buyers through the Serve HTTP proxy for a few dozen seats.

Every buyer runs a short script (hold then buy, hold then release, hold and keep, buy outright, buy
then cancel, try a wrong quantity and someone else's lock). Afterwards the database, the API and the
category actor must agree, nothing may be oversold, and every order the API confirmed must exist.
"""
from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
from sqlalchemy import text

from tests.helpers import assert_consistent, db_counters, many_buyers, new_category

SEATS = 40
BUYERS = 200
OK_STATUSES = {200, 201, 400, 404, 409}


@dataclass
class Ledger:
    """What the clients were told, to compare with what the database holds."""

    orders: dict[str, int] = field(default_factory=dict)  # order id → quantity (201 answers)
    cancelled: set[str] = field(default_factory=set)
    holds: dict[str, int] = field(default_factory=dict)  # granted and still active, by lockId
    granted: list[tuple[int, str]] = field(default_factory=list)  # (user id, lockId) of every hold
    statuses: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    def saw(self, action: str, r: httpx.Response, allowed: set[int]) -> None:
        self.statuses[(action, r.status_code)] += 1
        if r.status_code not in allowed:
            self.unexpected.append(f"{action}: {r.status_code} {r.text[:200]}")


async def script(client: httpx.AsyncClient, cat: dict, user: dict, kind: int, rng: random.Random, led: Ledger):
    h = user["headers"]
    quantity = rng.randint(1, 3)
    await asyncio.sleep(rng.random() * 1.0)  # spread arrivals so freed seats meet later buyers

    async def take_hold():
        nonlocal quantity
        r = await client.post("/api/holds", json={**cat["body"], "quantity": quantity}, headers=h)
        led.saw("hold", r, {201, 400})
        if r.status_code == 400 and quantity > 1:  # refused: try once more for a single seat
            quantity = 1
            r = await client.post("/api/holds", json={**cat["body"], "quantity": quantity}, headers=h)
            led.saw("hold", r, {201, 400})
        if r.status_code == 201:
            lock = r.json()["lockId"]
            led.holds[lock] = quantity
            led.granted.append((user["id"], lock))
            return lock
        return None

    async def confirm(lock, key=None, q=None):
        headers = {**h, **({"Idempotency-Key": key} if key else {})}
        r = await client.post("/api/orders/with-lock", headers=headers,
                              json={**cat["body"], "quantity": q or quantity, "lockId": lock})
        return r

    if kind == 0:  # hold, buy it (with an idempotency key), then retry the same request
        if lock := await take_hold():
            key = uuid.uuid4().hex
            r = await confirm(lock, key)
            led.saw("confirm", r, {201})
            if r.status_code == 201:
                led.orders[r.json()["id"]] = quantity
                led.holds.pop(lock, None)
                again = await confirm(lock, key)
                led.saw("confirm-retry", again, {201})
                if again.status_code == 201 and again.json()["id"] != r.json()["id"]:
                    led.unexpected.append("retry with the same Idempotency-Key created a second order")
    elif kind == 1:  # hold, then change my mind
        if lock := await take_hold():
            r = await client.delete(f"/api/holds/{lock}", headers=h)
            led.saw("release", r, {200})
            if r.status_code == 200:
                led.holds.pop(lock, None)
    elif kind == 2:  # hold and keep it (still active afterwards)
        await take_hold()
    elif kind == 3:  # buy outright
        r = await client.post("/api/orders", json={**cat["body"], "quantity": quantity}, headers=h)
        led.saw("purchase", r, {201, 400})
        if r.status_code == 201:
            led.orders[r.json()["id"]] = quantity
    elif kind == 4:  # buy, then cancel
        r = await client.post("/api/orders", json={**cat["body"], "quantity": quantity}, headers=h)
        led.saw("purchase", r, {201, 400})
        if r.status_code == 201:
            order_id = r.json()["id"]
            led.orders[order_id] = quantity
            c = await client.post(f"/api/orders/{order_id}/cancel", headers=h)
            led.saw("cancel", c, {201})
            if c.status_code == 201:
                led.cancelled.add(order_id)
    else:  # try someone else's lock, then a wrong quantity on my own, then buy it properly
        lock = await take_hold()
        others = [other for uid, other in led.granted if uid != user["id"]]
        if others:
            r = await confirm(rng.choice(others), q=1)
            led.saw("steal", r, {400})
        if lock:
            r = await confirm(lock, q=quantity + 1)
            led.saw("wrong-quantity", r, {400})
            r = await confirm(lock)
            led.saw("confirm", r, {201})
            if r.status_code == 201:
                led.orders[r.json()["id"]] = quantity
                led.holds.pop(lock, None)


async def rush(server: str, cat: dict, buyers: list[dict], seed: int) -> Ledger:
    led = Ledger()
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=server, timeout=120, limits=limits) as client:
        await asyncio.gather(*(script(client, cat, user, i % 6, random.Random(rng.random()), led)
                               for i, user in enumerate(buyers)))
    return led


def check_ledger(db, http, cat: dict, led: Ledger) -> dict:
    """The database holds exactly what the clients were told."""
    assert led.unexpected == [], led.unexpected[:10]
    with db.connect() as conn:
        rows = {str(r.id): r for r in conn.execute(text("SELECT id, quantity, status FROM orders "
                                                          "WHERE category_id = :c"), {"c": cat["category"]})}
        active = dict(conn.execute(text("SELECT id::text, quantity FROM holds WHERE category_id = :c "
                                        "AND status = 'active'"), {"c": cat["category"]}).all())
    # every confirmed order exists (none lost), with its quantity and the right status; no extra ones
    assert set(rows) == set(led.orders)
    for order_id, quantity in led.orders.items():
        assert rows[order_id].quantity == quantity
        assert rows[order_id].status == ("cancelled" if order_id in led.cancelled else "confirmed")
    sold = sum(q for o, q in led.orders.items() if o not in led.cancelled)
    assert active == led.holds
    counters = assert_consistent(db, http, cat["event"], cat["category"])
    assert counters["sold"] == sold and counters["held"] == sum(led.holds.values())
    assert counters["sold"] + counters["held"] <= SEATS
    return counters


def test_rush_never_oversells_and_loses_nothing(server, http, db, jwt_secret):
    cat = new_category(http, seats=SEATS)
    buyers = many_buyers(db, jwt_secret, BUYERS)
    led = asyncio.run(rush(server, cat, buyers, seed=4))
    requests = sum(led.statuses.values())
    assert 250 <= requests <= 450, (requests, led.statuses)
    check_ledger(db, http, cat, led)
    # the rush really fought over the seats: some were refused for lack of seats, and it sold out
    assert led.statuses[("hold", 400)] + led.statuses[("purchase", 400)] > 0, led.statuses
    assert led.statuses[("hold", 201)] > 0 and led.statuses[("confirm", 201)] > 0, led.statuses
    assert led.statuses[("cancel", 201)] > 0 and led.statuses[("release", 200)] > 0, led.statuses


def test_after_the_rush_exactly_the_freed_seats_sell_again(server, http, db, jwt_secret):
    cat = new_category(http, seats=SEATS)
    buyers = many_buyers(db, jwt_secret, BUYERS)
    led = asyncio.run(rush(server, cat, buyers, seed=11))
    before = check_ledger(db, http, cat, led)
    by_id = {b["id"]: b for b in buyers}
    for uid, lock in led.granted:  # the kept holds are let go by their owners
        if lock in led.holds:
            assert http.delete(f"/api/holds/{lock}", headers=by_id[uid]["headers"]).status_code == 200
    free = SEATS - before["sold"]
    assert db_counters(db, cat["category"]) == {"total": SEATS, "held": 0, "sold": before["sold"]}
    late = many_buyers(db, jwt_secret, free + 15)

    async def last_seats():
        async with httpx.AsyncClient(base_url=server, timeout=120) as client:
            return await asyncio.gather(*(client.post("/api/orders", json={**cat["body"], "quantity": 1},
                                                      headers=b["headers"]) for b in late))

    results = asyncio.run(last_seats())
    assert sorted(Counter(r.status_code for r in results).items()) == [(201, free), (400, 15)]
    after = assert_consistent(db, http, cat["event"], cat["category"])
    assert after == {"total": SEATS, "held": 0, "sold": SEATS}
