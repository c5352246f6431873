"""Buy-path benchmark: the routes buyers really call, on the system as `ticketing serve` starts it
(serve_config.yaml through ticketing.local), with the no-op ceiling `GET /api` measured in the same run.

    python -m bench.buy_path                       # HAProxy ingress (what `ticketing serve` uses)
    python -m bench.buy_path --also-default-proxy  # then the orders rush again on Serve's own proxy

Each scenario uses a fresh event created through `POST /api/events` right before its clock starts (no
warm-up request: the first buyer counts), buyers inserted straight into the database with tokens
signed by the server's secret (logins are measured on their own by bench/logins.py), and wrk as the
load generator (C, two threads: not the bottleneck at these rates). Scenarios, in the order they run:

  noop        GET /api, 64 connections: the ceiling of one request through ingress and gateway, measured
              before the orders trials and again right after them; the ratios are to the mean of the two
  orders      POST /api/orders, 4,000 orders for 1,000 seats, 64 connections, ORDERS_TRIALS times, each
              on its own fresh event: a rush lasts under two seconds, and a background burst of the
              machine's (Ray's metrics export, PostgreSQL's autovacuum) moves one rush by up to a tenth.
              `orders` in the report is the median trial (by answers/s), `orders_trials` every trial.
              Each trial is also divided by a ceiling of its own, the mean of the no-op runs (3 s) right
              before and right after it: `ratios_to_noop_beside` (the machine drifts by a tenth within
              minutes, so a ceiling beside the rush explains it better than the run's two)
  first_call  the first POST /api/orders of a fresh category against the median of the next 10
              (sequential), and the same for a category created behind the system's back (no warm-up);
              then, taking turns after the same 0.5 s pause, the first order of a fresh category and
              the first of a warm one (`after_a_pause`): the first request after any pause is slower,
              on every category, so this one leaves what the fresh category itself costs. Then the
              no-op again beside the 15 idle category actors it leaves (`idle_categories`)
  with_lock   POST /api/holds then POST /api/orders/with-lock, one buyer each, 64 connections
  overload    POST /api/orders, 10,000 orders for 1,000 seats, 1,000 connections (last: its idle
              connections slow the no-op for a while)

Each scenario runs beside no category but its own: once measured, its events are deleted through the
API and their actors end (`retire_events`; idle actors slow everything else, see `idle_categories`).
And the oversell check of every category afterwards; an orders rush also reports its two phases (the
sales, then the refusals once sold out). Writes bench/results/buy_path-<time>.json.
`--history N` first gives the system N earlier buyers (accounts with a ticket count in an earlier event,
as a system that has sold before holds them) instead of an empty database.
Needs `wrk` (Debian package).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from bench.rush import RESULTS, database, free_port, oversell_report, parse_wrk, wrk
from ticketing.cli import HAPROXY_INGRESS, use_haproxy_ingress

ORDERS_TRIALS = 5
FIRST_CALL_PAUSE_S = 0.5  # idle time before each first request of `after_a_pause`
NOOP_BESIDE_S = 3  # the no-op run before and after each orders trial, its own ceiling
RETIRE_WAIT_S = 30  # longest wait for the actors of deleted events to end

COMMON_LUA = """
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local function now_us()
  local ts = ffi.new("bench_timespec")
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC, shared by the threads
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end
-- A thread that has sent its share notes when its last answer came and tells the driver, which then
-- stops wrk (wrk itself would wait for the whole -d duration).
local function finish()
  last_us = now_us()
  local f = io.open(os.getenv("DONE_FILE"), "a")
  f:write("done\\n")
  f:close()
  wrk.thread:stop()
end
local threads = {}
local thread_id = 0
function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
  table.insert(threads, thread)
end
local function lines(path)
  local out = {}
  for line in io.lines(path) do out[#out + 1] = line end
  return out
end
function done(summary, latency, requests)
  local sums = {}
  for _, t in ipairs(threads) do
    for _, k in ipairs(KEYS) do sums[k] = (sums[k] or 0) + t:get(k) end
  end
  local first, last = nil, 0
  for _, t in ipairs(threads) do
    local f, l = t:get("first_us"), t:get("last_us") or 0
    if f and (first == nil or f < first) then first = f end
    if l > last then last = l end
  end
  local parts = {}
  for _, k in ipairs(KEYS) do parts[#parts + 1] = k .. "=" .. sums[k] end
  if last == 0 then last = first or 0 end  -- a thread that never finished: no duration
  io.write("RESULT " .. table.concat(parts, " ") .. " duration_us=" .. (last - (first or last)) .. "\\n")
end
"""

# Each thread sends its share of TOTAL requests, one buyer each, then stops.
ORDERS_LUA = COMMON_LUA + """
KEYS = {"created", "refused", "errors"}
local tokens = lines(os.getenv("TOKENS_FILE"))
function init(args)
  counter = id
  answered, created, refused, errors = 0, 0, 0, 0
  share = math.floor(TOTAL / NTHREADS)
end
function request()
  first_us = first_us or now_us()
  local token = tokens[(counter % #tokens) + 1]
  counter = counter + NTHREADS
  return wrk.format("POST", "/api/orders",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, BODY)
end
function response(status, headers, body)
  answered = answered + 1
  if status == 201 then created = created + 1 elseif status >= 500 then errors = errors + 1 else refused = refused + 1 end
  if answered == share then finish() end
end
"""

# A buyer holds, and as soon as the hold is granted the same buyer orders with it (the next request
# of that thread goes to a pending purchase before a new buyer's hold).
WITH_LOCK_LUA = COMMON_LUA + """
KEYS = {"holds", "purchases", "refused", "errors"}
local users = {}
local token_of = {}
for _, line in ipairs(lines(os.getenv("TOKENS_FILE"))) do
  local uid, token = string.match(line, "(%d+) (.+)")
  users[#users + 1] = token
  token_of[uid] = token
end
function init(args)
  counter = id
  pending = {}
  holds, purchases, refused, errors = 0, 0, 0, 0
  share = math.floor(TOTAL / NTHREADS)
end
function request()
  first_us = first_us or now_us()
  local headers = {["Content-Type"] = "application/json"}
  if #pending > 0 then
    local p = table.remove(pending, 1)
    headers["Authorization"] = "Bearer " .. p[1]
    return wrk.format("POST", "/api/orders/with-lock", headers,
      string.format('{"eventId":%d,"categoryId":%d,"quantity":1,"lockId":"%s"}', EVENT, CATEGORY, p[2]))
  end
  local token = users[(counter % #users) + 1]
  counter = counter + NTHREADS
  headers["Authorization"] = "Bearer " .. token
  return wrk.format("POST", "/api/holds", headers, HOLD_BODY)
end
function response(status, headers, body)
  if status == 201 then
    if string.find(body, '"totalPrice"', 1, true) then
      purchases = purchases + 1
      if purchases == share then finish() end
    else
      holds = holds + 1
      local lock = string.match(body, '"lockId":"([^"]+)"')
      local uid = string.match(body, '"userId":(%d+)')
      table.insert(pending, {token_of[uid], lock})
    end
  elseif status >= 500 then errors = errors + 1 else refused = refused + 1 end
end
"""


class Buyers:
    """Users inserted straight into the database, with tokens signed by the server's secret."""

    def __init__(self, db_url: str, secret: str) -> None:
        self.db_url, self.secret = db_url, secret

    def make(self, n: int, role: str = "assistant") -> list[tuple[int, str]]:
        from sqlalchemy import text

        from domain.auth import issue_token

        stamp = time.time_ns()
        with database(self.db_url) as conn:
            ids = conn.execute(
                text("INSERT INTO users (username, password_hash, role) "
                     "SELECT 'bp_' || :stamp || '_' || g, 'not-a-hash', CAST(:role AS user_role) "
                     "FROM generate_series(1, :n) g RETURNING id"),
                {"stamp": str(stamp), "n": n, "role": role},
            ).scalars().all()
        return [(i, issue_token(i, f"bp_{i}", role, self.secret, 3600)) for i in ids]


def create_event(base: str, organizer_token: str, seats: int) -> tuple[int, int]:
    """A fresh event with one category, through the API as an organizer creates it."""
    body = {"eventName": f"Bench on-sale {time.time_ns()}", "eventCategory": "bench",
            "eventDate": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat(), "location": "Arena",
            "ticketCategories": [{"categoryName": "Floor", "price": "10.00", "totalSeats": seats}]}
    r = httpx.post(base + "/api/events", json=body, headers={"Authorization": "Bearer " + organizer_token},
                   timeout=120)
    r.raise_for_status()
    event = r.json()
    return event["idEvent"], event["ticketCategories"][0]["id"]


def give_history(base: str, organizer_token: str, db_url: str, buyers: int) -> dict:
    """`buyers` accounts that bought one ticket of an earlier event: their users and `buyer_tickets` rows
    (the tables a rush writes to grow with every buyer; an empty database hides what that costs)."""
    from sqlalchemy import text

    event, category = create_event(base, organizer_token, seats=buyers)
    with database(db_url) as conn:
        conn.execute(text(
            "WITH earlier AS (INSERT INTO users (username, password_hash) "
            "  SELECT 'history_' || :e || '_' || g, 'not-a-hash' FROM generate_series(1, :n) g RETURNING id) "
            "INSERT INTO orders (user_id, event_id, category_id, quantity, unit_price, total_price, status, "
            "  event_name, category_name) "
            "SELECT id, :e, :c, 1, 10, 10, 'confirmed', 'Earlier', 'Floor' FROM earlier"),
            {"e": event, "c": category, "n": buyers})
        conn.execute(text("ANALYZE"))
        counted = conn.execute(text("SELECT count(*) FROM buyer_tickets")).scalar()
    return {"buyers": buyers, "buyer_tickets_rows": counted}


def write_tokens(work: Path, name: str, buyers: list[tuple[int, str]], with_ids: bool = False) -> Path:
    path = work / f"{name}.tokens"
    path.write_text("\n".join(f"{u} {t}" if with_ids else t for u, t in buyers))
    return path


def lua(work: Path, name: str, source: str, **constants) -> Path:
    path = work / f"{name}.lua"
    head = "".join(f"{k} = {json.dumps(v)}\n" for k, v in constants.items())
    path.write_text(head + source)
    return path


def wrk_until_done(url: str, connections: int, script: Path, env: dict, *, limit_s: float = 300,
                   timeout_s: float | None = None) -> dict:
    """Run wrk with a script whose threads each send a fixed share and then write to DONE_FILE; stop
    wrk when both have (SIGINT makes it print its summary) and parse it like bench.rush.wrk does.
    `timeout_s`: wrk's request timeout (default 2 s; answers slower than it are left out of wrk's
    latency figures and counted as timeouts)."""
    done = script.with_suffix(".done")
    done.unlink(missing_ok=True)
    cmd = ["wrk", "-s", str(script), "-t2", f"-c{connections}", f"-d{int(limit_s)}s", "--latency", url]
    if timeout_s:
        cmd[1:1] = ["--timeout", f"{int(timeout_s)}s"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **env, "DONE_FILE": str(done)})
    deadline = time.monotonic() + limit_s
    while proc.poll() is None and time.monotonic() < deadline:
        if done.exists() and done.read_text().count("done") >= 2:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=60)
    return parse_wrk(out)


def rate(result: dict, key: str) -> float | None:
    if key in result and result.get("duration_us"):
        return round(result[key] / (result["duration_us"] / 1e6), 1)
    return None


def orders_rush(base: str, work: Path, buyers: Buyers, organizer: str, db_url: str, *, name: str, orders: int,
                seats: int, connections: int) -> dict:
    event, category = create_event(base, organizer, seats)
    tokens = write_tokens(work, name, buyers.make(orders + connections))
    script = lua(work, name, ORDERS_LUA, NTHREADS=2, TOTAL=orders,
                 BODY=json.dumps({"eventId": event, "categoryId": category, "quantity": 1}))
    result = wrk_until_done(base + "/api/orders", connections, script, {"TOKENS_FILE": str(tokens)})
    result.pop("raw", None)
    result.update(orders=orders, seats=seats, connections=connections,
                  answers_per_second=rate({**result, "answers": result.get("created", 0) + result.get("refused", 0)
                                           + result.get("errors", 0)}, "answers"),
                  orders_per_second=rate(result, "created"), oversell=oversell_report(db_url, category))
    result["phases"] = phases(db_url, category, result)
    return result


def orders_trials(base: str, work: Path, buyers: Buyers, organizer: str, db_url: str, *, trials: int,
                  label: str) -> tuple[dict, list[dict]]:
    """The orders rush `trials` times, each on a fresh event: (the median trial by answers/s, all of
    them in the order they ran). With an even count the lower of the two middle trials is the median.

    Each trial also gets a ceiling of its own: the no-op run right before it and right after it (the one
    after is the next trial's before), so that a drift of the machine between the run's ceilings and a
    trial does not move that trial's ratio. The event is created after the no-op: it warms nothing."""
    results = []
    before = noop_beside(base)
    for n in range(trials):
        print(f"[{label}] POST /api/orders, 4,000 for 1,000 seats, c64 (trial {n + 1} of {trials}) ...", flush=True)
        result = orders_rush(base, work, buyers, organizer, db_url, name=f"orders{n}", orders=4000, seats=1000,
                             connections=64)
        result["retired"] = retire_events(base, organizer, db_url)
        after = noop_beside(base)
        result["noop_beside"] = {"before": before, "after": after}
        if before and after and result.get("answers_per_second"):
            result["ratio_to_noop_beside"] = round(result["answers_per_second"] / ((before + after) / 2), 3)
        results.append(result)
        before = after
    ranked = sorted(results, key=lambda r: r.get("answers_per_second") or 0)
    return ranked[(len(ranked) - 1) // 2], results


def category_actors() -> int:
    """Category actors alive now (every category on sale has one; bench/buy_path.py runs Ray in-process)."""
    import ray

    from actors import NAMESPACE

    return sum(1 for a in ray.util.list_named_actors(all_namespaces=True)
               if a["namespace"] == NAMESPACE and a["name"].startswith("category:"))


def retire_events(base: str, organizer: str, db_url: str) -> dict:
    """Delete (through the API, as the organizer would) every event the bench made so far, and wait until
    their category actors have ended: each scenario then runs beside no category but its own, whatever
    ran before it (`idle_categories` measures what leftovers would cost). The bench's system retires a
    closed category's actor after 1 s instead of 60 (TICKETING_CLOSED_ACTOR_EXIT_SECONDS). An actor with
    an active hold stays until its holds run out (it expires them): with-lock leaves the holds of the
    purchases in flight when the run ends. Returns the seconds it took and the actors left."""
    from sqlalchemy import text

    started = time.perf_counter()
    with database(db_url) as conn:  # deleting an event closes none of its holds
        events = conn.execute(text("SELECT id FROM events WHERE created_by = :o AND is_active"),
                              {"o": organizer_id(db_url, organizer)}).scalars().all()
        holding = conn.execute(text("SELECT count(DISTINCT category_id) FROM holds "
                                    "WHERE status = 'active' AND expires_at > now()")).scalar()
    for event in events:
        httpx.delete(f"{base}/api/events/{event}", headers={"Authorization": "Bearer " + organizer},
                     timeout=60).raise_for_status()
    while category_actors() > holding and time.perf_counter() - started < RETIRE_WAIT_S:
        time.sleep(0.2)
    return {"seconds": round(time.perf_counter() - started, 2), "actors_left": category_actors(),
            "holding_categories": holding}


def idle_categories(base: str, noop_after: dict) -> dict:
    """What idle category actors cost everything else: the no-op beside the 15 that first_call leaves on
    sale, against the run's second ceiling (measured beside none). Each actor process is woken 100 times
    a second by Ray's own signal check (a 10 ms timer in every Ray worker's main thread), idle or not."""
    time.sleep(2)  # let the last scenario's writes and publishes settle
    noop = wrk(base + "/api", 10, 64)
    noop.pop("raw", None)
    noop["category_actors"] = category_actors()
    if noop_after.get("per_second") and noop.get("per_second"):
        noop["over_noop_after"] = round(noop["per_second"] / noop_after["per_second"], 3)
    return noop


def noop_beside(base: str) -> float | None:
    return wrk(base + "/api", NOOP_BESIDE_S, 64).get("per_second")


def phases(db_url: str, category: int, result: dict) -> dict | None:
    """The rush's two phases: the sales (from the first order's decision to the last one's, as the orders'
    `created_at` say: a batch's decision time) and the refusals after them (the rest of the run). Each
    phase has its own pace: a sale writes, a refusal does not."""
    from sqlalchemy import text

    with database(db_url) as conn:
        first, last = conn.execute(text("SELECT min(created_at), max(created_at) FROM orders "
                                        "WHERE category_id = :c"), {"c": category}).one()
    if first is None or not result.get("duration_us"):
        return None
    sales_s = (last - first).total_seconds()
    rest_s = result["duration_us"] / 1e6 - sales_s
    refused = result.get("refused", 0) + result.get("errors", 0)
    return {"sales_s": round(sales_s, 3), "sales_per_second": round(result["created"] / sales_s, 1) if sales_s else None,
            "refusals_s": round(rest_s, 3), "refusals_per_second": round(refused / rest_s, 1) if rest_s > 0 else None}


def with_lock_rush(base: str, work: Path, buyers: Buyers, organizer: str, db_url: str, *, purchases: int,
                   connections: int) -> dict:
    event, category = create_event(base, organizer, seats=purchases * 2)
    tokens = write_tokens(work, "with_lock", buyers.make(purchases + 2 * connections), with_ids=True)
    script = lua(work, "with_lock", WITH_LOCK_LUA, NTHREADS=2, TOTAL=purchases, EVENT=event, CATEGORY=category,
                 HOLD_BODY=json.dumps({"eventId": event, "categoryId": category, "quantity": 1}))
    result = wrk_until_done(base + "/api/holds", connections, script, {"TOKENS_FILE": str(tokens)})
    result.pop("raw", None)
    result.update(connections=connections, purchases_per_second=rate(result, "purchases"),
                  oversell=oversell_report(db_url, category))
    return result


def first_call(base: str, buyers: Buyers, organizer: str, db_url: str) -> dict:
    """First request of a fresh category vs. the warm ones after it (sequential, one client); and vs. the
    first request of a warm category after the same pause (`after_a_pause`)."""

    # One keep-alive client for every request: a new connection would charge its set-up to whichever
    # request opens it, which says nothing about the category being fresh.
    client = httpx.Client(base_url=base, timeout=60)

    def timed(event: int, category: int, n: int) -> list[float]:
        out = []
        for _, token in buyers.make(n):
            t = time.perf_counter()
            r = client.post("/api/orders", json={"eventId": event, "categoryId": category, "quantity": 1},
                            headers={"Authorization": "Bearer " + token})
            out.append(time.perf_counter() - t)
            assert r.status_code == 201, r.text
        return out

    def sample(make_category, events: int) -> dict:
        firsts, warms = [], []
        for _ in range(events):
            times = timed(*make_category(), 11)
            firsts.append(times[0])
            warms.extend(times[1:])
        first, warm = statistics.median(firsts) * 1e3, statistics.median(warms) * 1e3
        return {"events": events, "first_ms_median": round(first, 2), "first_ms_max": round(max(firsts) * 1e3, 2),
                "warm_ms_median": round(warm, 2), "first_over_warm": round(first / warm, 2)}

    def after_a_pause(events: int) -> dict:
        # The first request after the system has been idle is slow on any category: on one warmed by
        # ten orders, the first order after 1 s idle took 9.5 ms, the second 8.2 and the third 6.5, as
        # warm (2026-12-05; two Gateway replicas, so each one's first). Taking turns with such a category,
        # each first request after the same pause, leaves what the fresh category itself costs.
        warm_category = create_event(base, organizer, seats=1000)
        timed(*warm_category, 11)
        fresh_firsts, warm_firsts = [], []
        for n in range(events):
            turns = [(create_event(base, organizer, seats=1000), fresh_firsts), (warm_category, warm_firsts)]
            for category, firsts in turns if n % 2 == 0 else reversed(turns):
                time.sleep(FIRST_CALL_PAUSE_S)
                firsts.append(timed(*category, 1)[0])
        fresh, warm = statistics.median(fresh_firsts) * 1e3, statistics.median(warm_firsts) * 1e3
        return {"events": events, "pause_s": FIRST_CALL_PAUSE_S, "fresh_first_ms_median": round(fresh, 2),
                "warm_category_first_ms_median": round(warm, 2), "fresh_over_warm_category": round(fresh / warm, 2)}

    client.get("/api")  # open the connection
    try:
        return {
            "created_through_api": sample(lambda: create_event(base, organizer, seats=1000), 5),
            "after_a_pause": after_a_pause(6),
            "created_in_database_no_warm_up": sample(
                lambda: category_behind_the_back(db_url, organizer_id(db_url, organizer)), 3),
        }
    finally:
        client.close()


def organizer_id(db_url: str, token: str) -> int:
    import jwt

    return int(jwt.decode(token, options={"verify_signature": False})["sub"])


def category_behind_the_back(db_url: str, organizer: int) -> tuple[int, int]:
    """An event inserted with SQL: no API call, so no actor is warmed (what every category was before)."""
    from sqlalchemy import text

    with database(db_url) as conn:
        event = conn.execute(
            text("INSERT INTO events (name, category, event_date, created_by) VALUES ('Cold', 'bench', :d, :o) "
                 "RETURNING id"), {"d": datetime.now(timezone.utc) + timedelta(days=30), "o": organizer}).scalar()
        category = conn.execute(
            text("INSERT INTO ticket_categories (event_id, name, price, total_seats) VALUES (:e, 'Floor', 10, 1000) "
                 "RETURNING id"), {"e": event}).scalar()
    return event, category


def run_system(ingress: str, work: Path, scenarios: list[str], database_url_given: str | None,
               history: int = 0, trials: int = ORDERS_TRIALS) -> dict:
    if ingress == "haproxy":
        use_haproxy_ingress()
        # HAProxy's stats and metrics listeners have fixed ports by default: free ones, so another
        # system on this machine (a test run, say) does not stop this one from starting.
        for name in ("RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_HAPROXY_STATS_PORT"):
            os.environ.setdefault(name, str(free_port()))
    else:
        for name in HAPROXY_INGRESS:
            os.environ.pop(name, None)
    from ticketing import settings
    from ticketing.local import start_local

    # start_local leaves DATABASE_URL set to the server it used; a second system starts its own again.
    if database_url_given is None:
        os.environ.pop("DATABASE_URL", None)
    # A deleted event's actors end 1 s after their last call instead of 60 (`retire_events`).
    os.environ.setdefault("TICKETING_CLOSED_ACTOR_EXIT_SECONDS", "1")
    system = start_local(data_dir=work / ingress, num_cpus=2, dashboard=False)
    try:
        base, db_url = system.url, system.database_url
        buyers = Buyers(db_url, settings.jwt_secret(system.data_dir))
        _, organizer = buyers.make(1, role="organizer")[0]
        report: dict = {"ingress": ingress}
        if history:
            print(f"[{ingress}] {history:,} earlier buyers ...", flush=True)
            report["history"] = give_history(base, organizer, db_url, history)
            report["history"]["retired"] = retire_events(base, organizer, db_url)  # its orders stay
        print(f"[{ingress}] no-op ceiling ...", flush=True)
        wrk(base + "/api", 2, 64)  # the proxy's own warm-up; no category is involved
        report["noop"] = wrk(base + "/api", 10, 64)
        report["noop"].pop("raw", None)
        # Every scenario runs beside no category but its own: each one's events are deleted once it is
        # measured (`retire_events`), because every category on sale keeps an actor and idle actors slow
        # everything else on the machine (twenty of them cost the no-op 8-25 % and the with-lock
        # purchases a fifth, 2026-12-05). `idle_categories` measures that in each run, after first_call.
        # The orders trials come right between the run's two ceilings: the machine drifts (a 10 s no-op
        # gave 967 to 1,473 req/s within 20 minutes on 2026-12-02), so the ratios are to their mean.
        if "orders" in scenarios:
            report["orders"], report["orders_trials"] = orders_trials(
                base, work, buyers, organizer, db_url, trials=trials, label=ingress)
        report["noop_after"] = wrk(base + "/api", 10, 64)
        report["noop_after"].pop("raw", None)
        if "first_call" in scenarios:
            print(f"[{ingress}] first call of a fresh category ...", flush=True)
            report["first_call"] = first_call(base, buyers, organizer, db_url)
            report["idle_categories"] = idle_categories(base, report["noop_after"])
            report["idle_categories"]["retired"] = retire_events(base, organizer, db_url)
        if "with_lock" in scenarios:
            print(f"[{ingress}] hold + with-lock, c64 ...", flush=True)
            report["with_lock"] = with_lock_rush(base, work, buyers, organizer, db_url, purchases=4000,
                                                 connections=64)
            report["with_lock"]["retired"] = retire_events(base, organizer, db_url)
        # The overload comes last: its 1,000 connections leave about 700 idle ones between HAProxy and the
        # Gateway for 20-40 s, and the no-op ran 7-10 % slower while they stayed (2026-12-05).
        if "overload" in scenarios:
            print(f"[{ingress}] overload: 10,000 orders for 1,000 seats, c1000 ...", flush=True)
            report["overload"] = orders_rush(base, work, buyers, organizer, db_url, name="overload", orders=10000,
                                             seats=1000, connections=1000)
        before, after = report["noop"].get("per_second"), report["noop_after"].get("per_second")
        noop = (before + after) / 2 if before and after else before or after
        report["ceiling"] = {"before": before, "after": after, "mean": noop}
        if noop:
            report["ratios_to_noop"] = {
                key: round(report[key][field] / noop, 3)
                for key, field in (("orders", "answers_per_second"), ("with_lock", "purchases_per_second"),
                                   ("overload", "answers_per_second"))
                if key in report and report[key].get(field)}
            if "orders_trials" in report:
                report["ratios_to_noop"]["orders_trials"] = [
                    round((t.get("answers_per_second") or 0) / noop, 3) for t in report["orders_trials"]]
        if beside := [t["ratio_to_noop_beside"] for t in report.get("orders_trials", ()) if "ratio_to_noop_beside" in t]:
            report["ratios_to_noop_beside"] = {"orders": statistics.median_low(beside), "orders_trials": beside}
        return report
    finally:
        system.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--also-default-proxy", action="store_true",
                        help="then the orders rush again on Serve's own proxy (`serve run serve_config.yaml`)")
    parser.add_argument("--scenarios", default="first_call,orders,with_lock,overload")
    parser.add_argument("--history", type=int, default=0, metavar="N",
                        help="first give the system N earlier buyers (default: an empty database)")
    parser.add_argument("--orders-trials", type=int, default=ORDERS_TRIALS, metavar="N",
                        help=f"orders rushes per system, each on a fresh event (default {ORDERS_TRIALS})")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    work = Path(tempfile.mkdtemp(prefix="ticketing-buy-path-"))
    scenarios = args.scenarios.split(",")
    given = os.environ.get("DATABASE_URL")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"buy_path-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    report = {"started": datetime.now(timezone.utc).isoformat(), "machine": {"cpus": os.cpu_count()},
              "env": {k: v for k, v in os.environ.items() if k.startswith("TICKETING_")}}
    report["haproxy"] = run_system("haproxy", work, scenarios, given, args.history, args.orders_trials)
    out.write_text(json.dumps(report, indent=2, default=str))  # kept even if the second system fails
    if args.also_default_proxy:
        report["default_proxy"] = run_system("default", work, ["orders"], given, args.history, args.orders_trials)
        out.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
