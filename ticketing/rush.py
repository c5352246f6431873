"""The rush driver: a simulated on-sale against the HTTP API (the notebooks and `ticketing rush`), and the
paced call loop the benchmarks drive the category actors with (`CallRush`).

Buyers arrive along an arrival curve, each hold seats and then buys, walks away (the hold expires) or
releases. A refused buyer tries again a few times, as real ones do. Watchers poll the public tickets
endpoint meanwhile. With the event's waiting room on (`RushConfig.queue`), each buyer first joins the
queue, polls their turn (at half the estimated wait, within `poll_seconds`) until admitted, and then holds
and buys with the pass; a buyer still waiting when the watchers see the event sold out leaves. Afterwards the outcome is checked against the server: seats sold (from the
organizer's order list) never exceed the seats on sale, and every order a buyer was told about exists;
given the database URL, the seat ledger of `ticketing.invariants` (counters = rows, nothing oversold) too.
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import httpx

from ticketing.accounts import register_and_login_async, unique
from ticketing.invariants import SOLD_ORDER_STATUSES

ARRIVALS = ("burst", "uniform", "ramp", "spike")
BEHAVIOURS = ("buy", "abandon", "release")
PASSWORD = "rush-password-1"


@dataclass
class RushConfig:
    buyers: int = 100
    seats: int = 50
    mix: dict[str, float] = field(default_factory=lambda: {"buy": 0.7, "abandon": 0.15, "release": 0.15})
    arrival: str = "spike"            # burst: all at once; uniform; ramp: more and more; spike: front-loaded
    arrival_seconds: float = 5.0      # arrivals spread over this window (not for burst)
    max_quantity: int = 2             # each buyer wants 1..max_quantity seats
    think_seconds: tuple[float, float] = (0.2, 1.5)  # between hold and buy/release
    retries: int = 3                  # a refused buyer tries again this many times
    retry_wait_seconds: float = 1.0
    watchers: int = 2                 # clients polling GET /api/events/:id/tickets
    watch_interval_seconds: float = 0.25
    concurrency: int = 64             # open HTTP connections at most
    warm_up: bool = True              # load the category actor before the clock starts (not a cold start)
    seed: int = 7
    # The event's waiting room (sale settings of the event, as an organizer sets them).
    queue: bool = False
    admission_per_minute: int | None = None
    max_shoppers: int | None = None   # buyers shopping at once (until they buy or their turn ends)
    shopping_minutes: int = 10
    poll_seconds: tuple[float, float] = (1.0, 30.0)  # a waiting buyer polls their turn within these bounds

    def __post_init__(self) -> None:
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {ARRIVALS}")
        unknown = set(self.mix) - set(BEHAVIOURS)
        if unknown or not self.mix or min(self.mix.values()) < 0 or sum(self.mix.values()) <= 0:
            raise ValueError(f"mix must weigh {BEHAVIOURS}, got {self.mix}")
        if self.buyers < 1 or self.seats < 0 or self.max_quantity < 1:
            raise ValueError("buyers and max_quantity must be >= 1, seats >= 0")
        if self.queue and self.admission_per_minute is None and self.max_shoppers is None:
            raise ValueError("a queue needs admission_per_minute, max_shoppers or both")
        if not 0 < self.poll_seconds[0] <= self.poll_seconds[1]:
            raise ValueError("poll_seconds must be (min, max) with 0 < min <= max")

    def sale(self) -> dict:
        """The event's sale settings in the API's fields (empty without a queue)."""
        if not self.queue:
            return {}
        sale = {"queueEnabled": True, "shoppingMinutes": self.shopping_minutes}
        if self.admission_per_minute is not None:
            sale["admissionPerMinute"] = self.admission_per_minute
        if self.max_shoppers is not None:
            sale["maxShoppers"] = self.max_shoppers
        return sale


def next_poll_seconds(estimated_wait: float | None, bounds: tuple[float, float], jitter: float = 1.0) -> float:
    """When a waiting buyer asks again: half the estimated wait (unknown: the longest), within the bounds,
    times a jitter (so thousands of buyers do not poll in step)."""
    low, high = bounds
    wanted = high if estimated_wait is None else estimated_wait / 2
    return min(high, max(low, wanted)) * jitter


def arrival_offsets(config: RushConfig, rng: random.Random) -> list[float]:
    """Seconds after the start at which each buyer arrives, sorted."""
    T, n = config.arrival_seconds, config.buyers
    u = [rng.random() for _ in range(n)]
    if config.arrival == "burst":
        offsets = [0.05 * x for x in u]
    elif config.arrival == "uniform":
        offsets = [T * x for x in u]
    elif config.arrival == "ramp":  # arrival rate grows linearly: density ~ t
        offsets = [T * math.sqrt(x) for x in u]
    else:  # spike: rate decays exponentially from the opening second
        k = 4.0
        offsets = [-T * math.log(1 - x * (1 - math.exp(-k))) / k for x in u]
    return sorted(offsets)


@dataclass
class Call:
    """One HTTP call made by a buyer."""

    buyer: int
    kind: str           # hold | order | release
    start: float        # seconds since the rush began
    latency: float      # seconds
    status: int         # HTTP status, 0 for a transport error
    quantity: int
    message: str = ""


@dataclass
class Sample:
    """What one watcher saw at one moment."""

    watcher: int
    t: float
    latency: float
    available: int
    held: int
    sold: int


@dataclass
class Buyer:
    index: int
    behaviour: str
    quantity: int
    arrival: float
    outcome: str = "pending"  # sold | abandoned | released | refused | expired | error | left (sold out in the queue)
    admitted: float | None = None  # seconds since the start at which the buyer saw their turn come (queue)


@dataclass
class RushResult:
    config: RushConfig
    event_id: int
    category_id: int
    buyers: list[Buyer]
    calls: list[Call]
    samples: list[Sample]
    duration: float
    hold_seconds: float | None = None      # as granted by the server (expiresAt - createdAt)
    final: dict = field(default_factory=dict)  # the server's figures after the rush
    polls: list[float] = field(default_factory=list)  # latencies of the waiting buyers' GET of their turn
    admissions: list[float] = field(default_factory=list)  # seconds since the start of each admission (database)

    def latencies(self, kind: str) -> list[float]:
        """Every call of this kind, answered or not: a call that timed out or lost its connection counts
        at the time it took to fail (leaving them out would hide the slowest calls of an overload)."""
        return sorted(c.latency for c in self.calls if c.kind == kind)

    def sold_over_time(self) -> list[tuple[float, int]]:
        """(seconds since the start, seats sold so far) after each confirmed order, as buyers were told."""
        return cumulative((c.start + c.latency, c.quantity)
                          for c in self.calls if c.kind == "order" and c.status == 201)

    def sold_out_seconds(self) -> float | None:
        """When the last seat was sold (buyers' answers), or None if the rush never sold them all."""
        return next((t for t, n in self.sold_over_time() if n >= self.config.seats), None)

    def summary(self) -> dict:
        holds = [c for c in self.calls if c.kind == "hold"]
        outcomes = {o: sum(1 for b in self.buyers if b.outcome == o)
                    for o in ("sold", "abandoned", "released", "expired", "refused", "error", "left")}
        hold_ms, order_ms = self.latencies("hold"), self.latencies("order")
        queue = {}
        if self.config.queue:
            joins, polls = self.latencies("join"), sorted(self.polls)
            queue = {"joins": len(joins), "joinP50ms": percentile_ms(joins, 50), "joinP99ms": percentile_ms(joins, 99),
                     "polls": len(polls), "pollsPerSecond": round(len(polls) / self.duration, 1) if self.duration else None,
                     "pollP99ms": percentile_ms(polls, 99),
                     "buyersAdmitted": sum(1 for b in self.buyers if b.admitted is not None),
                     "admittedInDatabase": len(self.admissions) if self.admissions else None}
        sold_out = self.sold_out_seconds()
        return {
            "buyers": len(self.buyers),
            "seats": self.config.seats,
            "holdsGranted": sum(1 for c in holds if c.status == 201),
            "holdsRefused": sum(1 for c in holds if 400 <= c.status < 500),
            "serverErrors": sum(1 for c in self.calls if c.status >= 500 or c.status == 0),
            "ordersConfirmed": sum(1 for c in self.calls if c.kind == "order" and c.status == 201),
            "soldSeats": self.final.get("soldByOrders", 0),
            "heldSeatsLeft": self.final.get("heldSeats", 0),
            "oversold": max(0, self.final.get("soldByOrders", 0) - self.config.seats),
            "consistent": self.final.get("consistent", False),
            **{f"buyers{k.capitalize()}": v for k, v in outcomes.items()},
            "holdP50ms": percentile_ms(hold_ms, 50),
            "holdP99ms": percentile_ms(hold_ms, 99),
            "orderP50ms": percentile_ms(order_ms, 50),
            "orderP99ms": percentile_ms(order_ms, 99),
            "holdSeconds": self.hold_seconds,
            "soldOutSeconds": None if sold_out is None else round(sold_out, 2),
            "durationSeconds": round(self.duration, 2),
            **queue,
        }

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "config": asdict(self.config), "eventId": self.event_id,
                "categoryId": self.category_id, "final": self.final}


def cumulative(points) -> list[tuple[float, int]]:
    """(time, amount) points → (time, running total) in time order."""
    out, total = [], 0
    for t, n in sorted(points):
        total += n
        out.append((t, total))
    return out


def percentile_ms(sorted_seconds: list[float], p: float) -> float | None:
    if not sorted_seconds:
        return None
    rank = min(len(sorted_seconds) - 1, max(0, math.ceil(p / 100 * len(sorted_seconds)) - 1))
    return round(sorted_seconds[rank] * 1000, 1)


def _moment(stamp: str) -> datetime:
    """An API time (`…Z`): Python 3.10's fromisoformat does not read the Z (3.11 does)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message", ""))
    except ValueError:  # not JSON (a proxy error page, say)
        return r.text[:200]


def summary_table(summary: dict) -> str:
    """The summary as an aligned two-column text table."""
    width = max(len(k) for k in summary)
    return "\n".join(f"{k:<{width}}  {'-' if v is None else v}" for k, v in summary.items())


# ---- setup -----------------------------------------------------------------------------------------


async def account(client: httpx.AsyncClient, role: str, username: str | None = None,
                  password: str = PASSWORD) -> dict:
    """Register (or reuse) an account and log in; returns {username, headers, ...}."""
    return await register_and_login_async(client, password, role, username, existing_ok=True)


async def create_event(client: httpx.AsyncClient, organizer: dict, seats: int, name: str | None = None,
                       price: str = "50.00", category: str = "General", sale: dict | None = None) -> dict:
    body = {
        "eventName": name or unique("Rush"),
        "eventCategory": "music",
        "eventDate": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat(),
        "location": "Arena",
        "ticketCategories": [{"categoryName": category, "price": price, "totalSeats": seats}],
        **(sale or {}),
    }
    r = await client.post("/api/events", json=body, headers=organizer["headers"])
    if r.status_code != 201:
        raise RuntimeError(f"create event: {r.status_code} {r.text}")
    return r.json()


async def warm_up(client: httpx.AsyncClient, organizer: dict, event_id: int, category_id: int) -> None:
    """One hold and its release before the on-sale opens, so the category has been through a whole
    hold cycle. A 404 on the release means the hold already expired (a policy's holds can last only
    seconds on a loaded machine): its seat is free again either way."""
    r = await client.post("/api/holds", json={"eventId": event_id, "categoryId": category_id, "quantity": 1},
                          headers=organizer["headers"])
    if r.status_code == 201:
        r = await client.delete(f"/api/holds/{r.json()['lockId']}", headers=organizer["headers"])
        if r.status_code not in (200, 404):
            raise RuntimeError(f"warm-up release: {r.status_code} {r.text}")


async def _gather_limited(factories, limit: int):
    semaphore = asyncio.Semaphore(limit)

    async def run(factory):
        async with semaphore:
            return await factory()

    return await asyncio.gather(*(run(f) for f in factories))


# ---- the rush ----------------------------------------------------------------------------------------


async def run_rush(url: str, config: RushConfig | None = None, *,
                   progress: Callable[[int, int], None] | None = None,
                   database_url: str | None = None, accounts: list[dict] | None = None) -> RushResult:
    """Set up an event and `config.buyers` accounts, run the rush, then read back the outcome (and the
    seat ledger and the queue's admissions from the database, if its URL is given).

    `accounts`: buyers made beforehand ({headers, ...}, e.g. `ticketing.accounts.mint_accounts`), else each
    is registered and logged in through the API. At most `config.concurrency` requests are in flight; a
    call's latency is timed from when it got a connection (the simulation's connection limit is not the
    server's delay). The warm-up hold is skipped with a queue (it would need a pass)."""
    config = config or RushConfig()
    rng = random.Random(config.seed)
    connections = config.concurrency + config.watchers + 1
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    gate = asyncio.Semaphore(config.concurrency)  # httpx's pool slows down badly with thousands queued in it
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        organizer = await account(client, "organizer")
        event = await create_event(client, organizer, config.seats, sale=config.sale())
        event_id, category_id = event["idEvent"], event["ticketCategories"][0]["id"]
        if config.warm_up and not config.queue:
            await warm_up(client, organizer, event_id, category_id)
        if accounts is not None:
            if len(accounts) < config.buyers:
                raise ValueError(f"{config.buyers} buyers, {len(accounts)} accounts given")
            accounts = accounts[:config.buyers]
        else:  # registration hashes passwords (CPU-heavy by design): a few at a time, before the clock starts
            accounts = await _gather_limited([lambda: account(client, "assistant")
                                              for _ in range(config.buyers)], 4)
        names, weights = zip(*config.mix.items())
        buyers = [Buyer(i, rng.choices(names, weights)[0], rng.randint(1, config.max_quantity), t)
                  for i, t in enumerate(arrival_offsets(config, rng))]
        thinks = [rng.uniform(*config.think_seconds) for _ in buyers]
        calls: list[Call] = []
        samples: list[Sample] = []
        polls: list[float] = []
        granted_durations: list[float] = []
        passes: dict[int, dict] = {}  # buyer index → the X-Queue-Pass header
        sold_out = asyncio.Event()  # the watchers saw every seat sold: waiting buyers leave
        done = 0
        started_at = time.time()
        t0 = time.monotonic()

        async def request(buyer: Buyer, method: str, path: str, **kw) -> tuple[float, float, httpx.Response]:
            headers = {**accounts[buyer.index]["headers"], **passes.get(buyer.index, {})}
            async with gate:
                start = time.monotonic()
                try:
                    r = await client.request(method, path, headers=headers, **kw)
                except httpx.HTTPError as exc:
                    return start, time.monotonic() - start, exc
            return start, time.monotonic() - start, r

        async def timed(buyer: Buyer, kind: str, method: str, path: str, **kw) -> httpx.Response | None:
            start, latency, r = await request(buyer, method, path, **kw)
            if isinstance(r, Exception):
                calls.append(Call(buyer.index, kind, start - t0, latency, 0, buyer.quantity, type(r).__name__))
                return None
            message = "" if r.status_code < 300 else _message(r)
            calls.append(Call(buyer.index, kind, start - t0, latency, r.status_code, buyer.quantity, message))
            return r

        async def wait_turn(buyer: Buyer) -> bool:
            """Join the queue and poll until admitted (then the pass goes with every call); False if the
            buyer left (sold out while waiting) or could not queue."""
            r = await timed(buyer, "join", "POST", f"/api/events/{event_id}/queue")
            if r is None or r.status_code != 201:
                buyer.outcome = "error" if r is None or r.status_code >= 500 else "refused"
                return False
            state = r.json()
            while state.get("status") != "admitted":
                if state.get("status") == "expired":
                    buyer.outcome = "expired"
                    return False
                pause = next_poll_seconds(state.get("estimatedWaitSeconds"), config.poll_seconds,
                                          rng.uniform(0.8, 1.2))
                try:
                    await asyncio.wait_for(sold_out.wait(), pause)
                except asyncio.TimeoutError:  # not the builtin one before Python 3.11
                    pass
                if sold_out.is_set():
                    buyer.outcome = "left"
                    return False
                _, latency, r = await request(buyer, "GET", f"/api/events/{event_id}/queue")
                if isinstance(r, Exception) or r.status_code != 200:
                    continue  # a failed poll: ask again later
                polls.append(latency)
                state = r.json()
            buyer.admitted = time.monotonic() - t0
            passes[buyer.index] = {"X-Queue-Pass": state["queuePass"]}
            return True

        async def one_buyer(buyer: Buyer) -> None:
            nonlocal done
            await asyncio.sleep(max(0.0, buyer.arrival - (time.monotonic() - t0)))
            if config.queue and not await wait_turn(buyer):
                done += 1
                if progress:
                    progress(done, len(buyers))
                return
            body = {"eventId": event_id, "categoryId": category_id, "quantity": buyer.quantity}
            hold, failed = None, False
            for attempt in range(config.retries + 1):
                r = await timed(buyer, "hold", "POST", "/api/holds", json=body)
                if r is not None and r.status_code == 201:
                    hold = r.json()
                    break
                failed = r is None or r.status_code >= 500
                if attempt < config.retries:  # sold out for now: held seats may come back
                    await asyncio.sleep(config.retry_wait_seconds * (1 + rng.random()))
            if hold is None:
                buyer.outcome = "error" if failed else "refused"
            else:
                granted_durations.append(
                    (_moment(hold["expiresAt"]) - _moment(hold["createdAt"])).total_seconds())
                buyer.outcome = await finish(buyer, hold)
            done += 1
            if progress:
                progress(done, len(buyers))

        async def finish(buyer: Buyer, hold: dict) -> str:
            if buyer.behaviour == "abandon":
                return "abandoned"  # walks away: the hold expires on its own
            await asyncio.sleep(thinks[buyer.index])
            if buyer.behaviour == "release":
                r = await timed(buyer, "release", "DELETE", f"/api/holds/{hold['lockId']}")
                return "released" if r is not None and r.status_code == 200 else "expired"
            r = await timed(buyer, "order", "POST", "/api/orders/with-lock",
                            json={"eventId": event_id, "categoryId": category_id,
                                  "quantity": buyer.quantity, "lockId": hold["lockId"]})
            if r is None or r.status_code >= 500:
                return "error"
            return "sold" if r.status_code == 201 else "expired"

        stop_watching = asyncio.Event()

        async def watcher(index: int) -> None:
            while not stop_watching.is_set():
                start = time.monotonic()
                try:
                    r = await client.get(f"/api/events/{event_id}/tickets")
                    if r.status_code == 200:
                        c = r.json()[0]
                        samples.append(Sample(index, start - t0, time.monotonic() - start, c["availableSeats"],
                                              c["heldSeats"], c["reservedSeats"]))
                        if c["reservedSeats"] >= c["totalSeats"]:
                            sold_out.set()
                except httpx.HTTPError:
                    pass
                try:
                    await asyncio.wait_for(stop_watching.wait(), config.watch_interval_seconds)
                except asyncio.TimeoutError:  # not the builtin one before Python 3.11
                    pass

        watchers = [asyncio.create_task(watcher(i)) for i in range(config.watchers)]
        shoppers = [asyncio.ensure_future(one_buyer(b)) for b in buyers]
        try:
            await asyncio.gather(*shoppers)
        finally:
            # One buyer failing must not leave the others running on in a notebook's event loop, on a
            # client that is about to close.
            for task in shoppers:
                task.cancel()
            await asyncio.gather(*shoppers, return_exceptions=True)
            stop_watching.set()
            await asyncio.gather(*watchers)
        duration = time.monotonic() - t0
        final = await read_back(client, organizer, event_id, category_id, config.seats, calls)
    admissions: list[float] = []
    if database_url:
        final = await asyncio.to_thread(with_ledger, final, database_url, category_id)
        if config.queue:
            admissions = [t - started_at for t in await asyncio.to_thread(admission_stamps, database_url, event_id)]
    return RushResult(config, event_id, category_id, buyers, calls, samples, duration,
                      hold_seconds=round(granted_durations[0], 3) if granted_durations else None, final=final,
                      polls=polls, admissions=sorted(admissions))


async def read_back(client: httpx.AsyncClient, organizer: dict, event_id: int, category_id: int,
                    seats: int, calls: list[Call]) -> dict:
    """The server's truth after the rush, and whether it agrees with what buyers were told."""
    tickets = (await client.get(f"/api/events/{event_id}/tickets")).json()
    category = next(c for c in tickets if c["id"] == category_id)
    r = await client.get(f"/api/orders/event/{event_id}", headers=organizer["headers"])
    if r.status_code != 200:
        raise RuntimeError(f"orders of event: {r.status_code} {r.text}")
    confirmed = [o for o in r.json() if o["status"] in SOLD_ORDER_STATUSES]
    sold_by_orders = sum(o["quantity"] for o in confirmed)
    told_sold = sum(c.quantity for c in calls if c.kind == "order" and c.status == 201)
    return {
        "totalSeats": category["totalSeats"],
        "soldSeats": category["reservedSeats"],
        "heldSeats": category["heldSeats"],
        "availableSeats": category["availableSeats"],
        "confirmedOrders": len(confirmed),
        "soldByOrders": sold_by_orders,
        "soldToldToBuyers": told_sold,
        # Every seat a buyer was told is theirs is a real order, and the category's counter agrees; and the
        # seats sold and still held fit in the category (without the database, what the API can see).
        "consistent": (sold_by_orders == category["reservedSeats"] == told_sold and sold_by_orders <= seats
                       and category["heldSeats"] + category["reservedSeats"] <= category["totalSeats"]
                       and category["availableSeats"] >= 0),
    }


def with_ledger(final: dict, database_url: str, category_id: int) -> dict:
    """`final` with the database's seat ledger (counters = rows, nothing oversold) folded into `consistent`."""
    from sqlalchemy import create_engine

    from storage.database import normalise_url
    from ticketing.invariants import read_seat_ledger

    engine = create_engine(normalise_url(database_url))
    try:
        ledger = read_seat_ledger(engine, category_id)
    finally:
        engine.dispose()
    return {**final, "ledger": ledger.as_dict(), "consistent": final["consistent"] and ledger.ok}


def admission_stamps(database_url: str, event_id: int) -> list[float]:
    """When each buyer of the event's queue was admitted (epoch seconds, as committed), from the database."""
    from sqlalchemy import create_engine, text

    from storage.database import normalise_url

    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as conn:
            return [float(t) for t in conn.execute(
                text("SELECT extract(epoch FROM admitted_at) FROM queue_entries"
                     " WHERE event_id = :e AND admitted_at IS NOT NULL"), {"e": event_id}).scalars()]
    finally:
        engine.dispose()


def run_rush_sync(url: str, config: RushConfig | None = None, **kw) -> RushResult:
    return asyncio.run(run_rush(url, config, **kw))


# ---- calls straight to the category actors (the benchmarks: no HTTP) ---------------------------------


@dataclass
class Tally:
    """One run of `CallRush`: answers that were ok or refused, each call's latency, the run's length."""

    ok: int = 0
    refused: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0


class CallRush:
    """`in_flight` workers take items off a queue and each await `call(item)` (an answer with `.ok`, as
    `CategoryActors.call` gives), timed. `rate` > 0 paces the calls at that many a second, counted from the
    start of the first run over every run of this object; 0 sends them as fast as they are answered."""

    def __init__(self, in_flight: int, rate: float = 0.0) -> None:
        self.in_flight = in_flight
        self.rate = rate
        self.issued = 0
        self.start: float | None = None

    async def run(self, items: list, call: Callable) -> Tally:
        queue = list(items)
        tally = Tally()
        if self.start is None:
            self.start = time.perf_counter()

        async def worker() -> None:
            while queue:
                item = queue.pop()
                self.issued += 1
                if self.rate:
                    await asyncio.sleep(max(0.0, self.start + self.issued / self.rate - time.perf_counter()))
                t = time.perf_counter()
                result = await call(item)
                tally.latencies.append(time.perf_counter() - t)
                if result.ok:
                    tally.ok += 1
                else:
                    tally.refused += 1

        begun = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(self.in_flight)))
        tally.seconds = time.perf_counter() - begun
        return tally
