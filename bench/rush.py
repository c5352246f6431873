"""Rush benchmark: one hot category, many concurrent buyers, and the machine's ceilings measured in the
same run so our figures can be read as ratios.

    python -m bench.rush                      # default Serve proxy
    python -m bench.rush --ingress haproxy    # HAProxy as `ticketing serve` runs it (ticketing.cli.HAPROXY_INGRESS)

Measures, in one process and one cluster:
  baselines  single-row committed INSERTs into the same PostgreSQL (one connection);
             empty calls to a Ray actor (asyncio caller, 64 in flight);
             a no-op request through the same Serve proxy (`GET /api`, wrk -c64)
  ours       committed holds/s on one category through the actor (CategoryActors, as the gateway calls it);
             holds/s through HTTP (`POST /api/holds`, wrk -c64, one buyer per request)
and the oversell check afterwards (ticketing.invariants: must be 0, counters = rows). Writes bench/results/rush-<ingress>-<time>.json.
Needs `wrk` (Debian package) for the HTTP figures.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ticketing.cli import use_haproxy_ingress
from ticketing.local import free_port  # noqa: F401 (re-exported: bench.buy_path and bench.ws_fanout import it here)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

WRK_HOLDS_LUA = """
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do tokens[#tokens + 1] = line end
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
  table.insert(threads, thread)
end
function init(args)
  counter = id  -- threads interleave over the token list so no buyer is used twice
  ok = 0
  refused = 0
end
function request()
  local token = tokens[(counter % #tokens) + 1]
  counter = counter + NTHREADS
  return wrk.format("POST", "/api/holds",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, BODY)
end
function response(status, headers, body)
  if status == 201 then ok = ok + 1 else refused = refused + 1 end
end
function done(summary, latency, requests)
  local total_ok, total_refused = 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_refused = total_refused + t:get("refused")
  end
  io.write(string.format("RESULT ok=%d refused=%d\\n", total_ok, total_refused))
end
"""


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


# ---- baselines ---------------------------------------------------------------------------------------


def baseline_inserts(db_url: str, seconds: float) -> dict:
    import psycopg

    url = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_insert (id bigserial PRIMARY KEY, v int)")
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.execute("INSERT INTO bench_insert (v) VALUES (%s)", (n,))  # autocommit: one commit each
            n += 1
        elapsed = time.perf_counter() - start
        conn.execute("DROP TABLE bench_insert")
    return {"per_second": n / elapsed, "count": n}


def baseline_actor_calls(seconds: float, in_flight: int = 64) -> dict:
    import ray

    @ray.remote(num_cpus=0)
    class Empty:
        async def noop(self) -> None:
            return None

    actor = Empty.remote()
    ray.get(actor.noop.remote())

    async def run() -> dict:
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                await actor.noop.remote()
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return {"per_second": len(latencies) / (time.perf_counter() - start), "count": len(latencies),
                "p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3}

    result = asyncio.run(run())
    ray.kill(actor)
    return result


def wrk(url: str, seconds: int, connections: int, script: str | None = None, env: dict | None = None) -> dict:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk not installed (apt-get install wrk)"}
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict:
    """wrk's summary (with --latency) and a script's `RESULT k=v ...` line → a dict."""
    result: dict = {"raw": out}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            result["per_second"] = float(parts[1])
        elif len(parts) == 2 and parts[0] in ("50%", "99%"):
            result[f"p{parts[0][:-1]}_ms"] = _ms(parts[1])
        elif line.startswith("RESULT"):
            result.update({k: int(v) for k, v in (kv.split("=") for kv in parts[1:])})
        elif "requests in" in line:
            result["requests"] = int(parts[0])
    return result


def _ms(text: str) -> float:
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


# ---- our paths ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(db_url: str):
    """One connection to the benchmark's database, in a transaction committed on exit; its engine is
    disposed of afterwards, so no pool outlives the call."""
    from sqlalchemy import create_engine

    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def make_category(db_url: str, seats: int, buyers: int) -> tuple[int, int, list[int]]:
    """An event with one huge category and `buyers` users, written straight to the database."""
    from sqlalchemy import text

    from domain.auth import hash_password

    password_hash = hash_password("bench-password")  # one hash for all: registration is not measured
    stamp = time.time_ns()
    with database(db_url) as conn:
        organizer = conn.execute(
            text("INSERT INTO users (username, password_hash, role) VALUES (:u, :h, 'organizer') RETURNING id"),
            {"u": f"bench_org_{stamp}", "h": password_hash},
        ).scalar()
        event = conn.execute(
            text("INSERT INTO events (name, category, event_date, created_by) "
                 "VALUES ('Bench rush', 'bench', :d, :o) RETURNING id"),
            {"d": datetime.now(timezone.utc) + timedelta(days=30), "o": organizer},
        ).scalar()
        category = conn.execute(
            text("INSERT INTO ticket_categories (event_id, name, price, total_seats) "
                 "VALUES (:e, 'Floor', 10, :s) RETURNING id"),
            {"e": event, "s": seats},
        ).scalar()
        users = conn.execute(
            text("INSERT INTO users (username, password_hash) "
                 "SELECT 'bench_' || :stamp || '_' || g, :h FROM generate_series(1, :n) g RETURNING id"),
            {"stamp": str(stamp), "h": password_hash, "n": buyers},
        ).scalars().all()
    return event, category, list(users)


def rush_through_actor(db_url: str, event: int, category: int, users: list[int], in_flight: int) -> dict:
    from actors.client import CategoryActors
    from domain.inventory import HoldRequest
    from ticketing.rush import CallRush

    async def run() -> dict:
        client = CategoryActors(db_url, {"hold_seconds": 3600, "max_per_order": 10})
        await client.call(event, category, HoldRequest(users.pop(), 1))  # start and load the actor
        tally = await CallRush(in_flight).run(users, lambda user: client.call(event, category, HoldRequest(user, 1)))
        latencies = tally.latencies
        return {"per_second": len(latencies) / tally.seconds, "granted": tally.ok, "refused": tally.refused,
                "in_flight": in_flight, "p50_ms": percentile(latencies, 50) * 1e3,
                "p99_ms": percentile(latencies, 99) * 1e3}

    return asyncio.run(run())


def oversell_report(db_url: str, category: int) -> dict:
    """The category's seat ledger (ticketing.invariants) in the results' form."""
    from ticketing.invariants import seat_ledger

    with database(db_url) as conn:
        return seat_ledger(conn, category).report()


# ---- main ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ingress", choices=["default", "haproxy"], default="default")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each HTTP measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--actor-holds", type=int, default=20000, help="holds in the direct-actor rush")
    parser.add_argument("--in-flight", type=int, default=256, help="concurrent callers in the direct-actor rush")
    parser.add_argument("--http-buyers", type=int, default=40000, help="distinct buyers for the HTTP rush")
    args = parser.parse_args()

    if args.ingress == "haproxy":
        use_haproxy_ingress()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import httpx
    import ray
    from ray import serve

    from deployments.app import build_app
    from domain.auth import issue_token
    from storage import migrate
    from storage.database import normalise_url
    from storage.embedded import start_embedded
    from ticketing.settings import jwt_secret

    work = Path(tempfile.mkdtemp(prefix="ticketing-bench-"))
    db_url = normalise_url(os.environ.get("DATABASE_URL") or start_embedded(work / "pgdata", stop_on_exit=True))
    migrate.upgrade(db_url)
    ray.init(num_cpus=2, include_dashboard=False, namespace="ticketing", log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"database_url": db_url, "data_dir": str(work)}), name="ticketing", route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    report: dict = {"ingress": args.ingress, "started": datetime.now(timezone.utc).isoformat(),
                    "machine": {"cpus": os.cpu_count()}, "connections": args.connections}

    print("baseline: single-row committed inserts ...", flush=True)
    report["baseline_pg_insert"] = baseline_inserts(db_url, 5)
    print("baseline: empty actor calls ...", flush=True)
    report["baseline_actor_call"] = baseline_actor_calls(5)
    print("baseline: no-op HTTP through the Serve proxy ...", flush=True)
    wrk(base + "/api", 2, args.connections)  # warm-up
    report["baseline_http_noop"] = wrk(base + "/api", args.seconds, args.connections)

    print("ours: holds through the category actor ...", flush=True)
    event, category, users = make_category(db_url, seats=10_000_000, buyers=args.actor_holds)
    report["actor_holds"] = rush_through_actor(db_url, event, category, users, args.in_flight)
    report["actor_holds"]["oversell"] = oversell_report(db_url, category)

    print("ours: holds through HTTP ...", flush=True)
    event, category, users = make_category(db_url, seats=10_000_000, buyers=args.http_buyers)
    secret = jwt_secret(work)
    warm_user = users.pop()
    warm = httpx.post(base + "/api/holds", json={"eventId": event, "categoryId": category, "quantity": 1},
                      headers={"Authorization": "Bearer " + issue_token(warm_user, "w", "assistant", secret, 3600)})
    assert warm.status_code == 201, warm.text  # the category actor is up before the clock starts
    tokens = work / "tokens.txt"
    tokens.write_text("\n".join(issue_token(u, f"b{u}", "assistant", secret, 3600) for u in users))
    script = work / "holds.lua"
    body = json.dumps({"eventId": event, "categoryId": category, "quantity": 1})
    script.write_text(f"NTHREADS = 2\nBODY = {json.dumps(body)}\n" + WRK_HOLDS_LUA)
    report["http_holds"] = wrk(base + "/api/holds", args.seconds, args.connections, str(script),
                               {"TOKENS_FILE": str(tokens)})
    report["http_holds"]["oversell"] = oversell_report(db_url, category)

    def ratio(a: dict, b: dict) -> float | None:
        if "per_second" in a and "per_second" in b and b["per_second"]:
            return round(a["per_second"] / b["per_second"], 3)
        return None

    report["ratios"] = {
        "actor_holds_per_pg_single_insert": ratio(report["actor_holds"], report["baseline_pg_insert"]),
        "actor_holds_per_empty_actor_call": ratio(report["actor_holds"], report["baseline_actor_call"]),
        "http_holds_per_http_noop": ratio(report["http_holds"], report["baseline_http_noop"]),
    }
    for key in ("baseline_http_noop", "http_holds"):
        report[key].pop("raw", None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"rush-{args.ingress}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items()}, indent=2, default=str))
    print(f"written to {out}")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
