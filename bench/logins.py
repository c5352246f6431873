"""Logins benchmark: register + login through HTTP at 32 concurrent clients.

    python -m bench.logins                       # starts the system (as the tests do) once per setting:
                                                 # the current default parameters, then the old baseline
    python -m bench.logins --configs default     # only the defaults
    python -m bench.logins --ingress haproxy     # HAProxy as `ticketing serve` runs it (ticketing.cli.HAPROXY_INGRESS)
    python -m bench.logins --url http://127.0.0.1:8000   # a running system, at whatever it is configured with

For each setting: `--users` users (and 2 x `--clients` + 2 more) register (`POST /api/auth/register`, registrations/s), then the first `--users` each log in
`--rounds` times (`POST /api/auth/login`, logins/s), `--clients` requests in flight throughout, and the
no-op `GET /api` at the same concurrency for the ceiling of the path. No warm-up before the clock. The load
generator is wrk (Debian package), not the bottleneck at these rates.
When it starts the system, each setting runs in its own child process with its own Ray cluster, embedded
PostgreSQL and Serve application, the argon2 parameters given through the settings' environment
variables (TICKETING_ARGON2_*), and the parameters of the stored hashes are read back from the database
(parameters only; no password or hash is written to the results).
Writes bench/results/logins-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from bench.buy_path import COMMON_LUA, lua, rate, wrk_until_done
from bench.rush import RESULTS, ROOT, free_port, wrk
from ticketing.cli import use_haproxy_ingress

CONFIGS = {
    # name: argon2 settings (env); "default" sets nothing, so it measures the code's defaults
    "default": {},
    "baseline-m64MiB-t3-p4": {"TICKETING_ARGON2_MEMORY_KIB": "65536", "TICKETING_ARGON2_TIME_COST": "3",
                              "TICKETING_ARGON2_PARALLELISM": "4"},
}
PASSWORD = "bench-Login-pass-1"


# ---- the load ----------------------------------------------------------------------------------------

# wrk (C) sends the requests, as in bench/buy_path.py: a Python client at these rates took a good part of a
# core from the 2-core machine the system runs on (httpx, 2026-12-03: its no-op ceiling was 118-127 req/s,
# the client's own). Each thread sends its share of TOTAL, one account each (`PREFIX .. n`), and the phase
# is timed from the first request to the last answer of the shares. TOTAL is a multiple of NTHREADS.
AUTH_LUA = COMMON_LUA + """
KEYS = {"ok", "refused", "errors", "unauthorized", "limited"}
function init(args)
  counter = id
  answered, ok, refused, errors, unauthorized, limited = 0, 0, 0, 0, 0, 0
  share = math.floor(TOTAL / NTHREADS)
end
function request()
  first_us = first_us or now_us()
  -- Registration: accounts PREFIX .. n for n = id, id + NTHREADS, ..., never the same twice; logins:
  -- accounts NTHREADS .. USERS + NTHREADS - 1 in turn. wrk calls request() once on thread 0 to check the
  -- script and sends nothing for it, so account 0 is never registered. A thread sends on while its last
  -- answers come in; when it stops, what it still has in flight is cancelled, so it registers
  -- 2 x --clients more accounts than are logged in: the cancelled ones are past those.
  local n = counter
  if LOGIN then n = NTHREADS + counter % USERS end
  counter = counter + NTHREADS
  return wrk.format("POST", PATH, {["Content-Type"] = "application/json"},
    string.format('{"username":"%s%d","password":"%s"}', PREFIX, n, PASSWORD))
end
function response(status, headers, body)
  answered = answered + 1
  if status == 201 then ok = ok + 1 elseif status >= 500 then errors = errors + 1 else refused = refused + 1 end
  if status == 401 then unauthorized = unauthorized + 1 elseif status == 429 then limited = limited + 1 end
  if answered == share then finish() end
end
"""


def phase(url: str, work: Path, name: str, path: str, total: int, clients: int, prefix: str, users: int) -> dict:
    script = lua(work, name, AUTH_LUA, NTHREADS=2, TOTAL=total, PATH=path, PREFIX=prefix, USERS=users,
                 LOGIN=path.endswith("/login"), PASSWORD=PASSWORD)
    result = wrk_until_done(url + path, clients, script, {}, timeout_s=60)
    result.pop("raw", None)
    result.update(per_second=rate(result, "ok"), seconds=round(result.get("duration_us", 0) / 1e6, 2))
    return result


def drive(url: str, clients: int, users: int, rounds: int, noop_seconds: int) -> dict:
    stamp = uuid.uuid4().hex[:8]
    prefix = f"bench_login_{stamp}_"
    work = Path(tempfile.mkdtemp(prefix="bench-logins-wrk-"))
    register = phase(url, work, "register", "/api/auth/register", users + 2 * clients + 2, clients, prefix, users)
    login = phase(url, work, "login", "/api/auth/login", users * rounds, clients, prefix, users)
    noop = wrk(url + "/api", noop_seconds, clients)
    noop.pop("raw", None)
    return {"registrations": register, "logins": login, "noop_get_api": noop, "usernames_prefix": prefix}


# ---- one setting, in its own system ------------------------------------------------------------------


def stored_parameters(db_url: str, prefix: str) -> list[str]:
    """The distinct argon2 parameter strings (`argon2id m=..,t=..,p=..`) of the bench users' hashes."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT DISTINCT split_part(password_hash, '$', 2) || ' ' || split_part(password_hash, '$', 4) "
                "FROM users WHERE username LIKE :p"), {"p": prefix + "%"}).scalars().all()
    finally:
        engine.dispose()
    return sorted(rows)


def hashing_ceiling(seconds: float = 3.0) -> dict:
    """Verifies/s of the configured hasher on its own (no HTTP, no database), one per thread of the pool the
    AuthService uses: what this machine can do at these parameters, right now (other load included)."""
    from concurrent.futures import ThreadPoolExecutor

    from domain.auth import Argon2Params, PasswordHasher
    from ticketing import settings

    hashing = settings.password_hashing()
    hasher = PasswordHasher(Argon2Params(hashing.memory_kib, hashing.time_cost, hashing.parallelism))
    stored = hasher.hash(PASSWORD)
    deadline = time.perf_counter() + seconds

    def work() -> int:
        n = 0
        while time.perf_counter() < deadline:
            hasher.verify(PASSWORD, stored)
            n += 1
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(hashing.thread_count()) as pool:
        count = sum(pool.map(lambda _: work(), range(hashing.thread_count())))
    elapsed = time.perf_counter() - start
    return {"verifies_per_second": round(count / elapsed, 1), "threads": hashing.thread_count(),
            "ms_per_verify_per_thread": round(1e3 * elapsed * hashing.thread_count() / count, 1)}


def child(args) -> None:
    """Start the system the way the tests do (embedded PostgreSQL, local Ray, Serve), drive it, print JSON."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Every account is driven from this one address, so the per-address login and registration limits
    # would answer most of the load with 429 (tests/test_abuse_limits.py covers them): off, as in tests.
    os.environ.setdefault("TICKETING_RATE_LIMITS", "off")
    import ray
    from ray import serve

    from deployments.app import build_app
    from storage.database import normalise_url
    from storage.embedded import start_embedded
    from ticketing import settings

    load_before = os.getloadavg()
    ceiling = hashing_ceiling()
    work = Path(tempfile.mkdtemp(prefix="bench-logins-"))
    db_url = normalise_url(os.environ.get("DATABASE_URL") or start_embedded(work / "pgdata", stop_on_exit=True))
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="ticketing", log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"database_url": db_url, "data_dir": str(work)}), name="ticketing", route_prefix="/")
    try:
        result = drive(f"http://127.0.0.1:{port}", args.clients, args.users, args.rounds, args.noop_seconds)
        hashing = settings.password_hashing()
        result["settings"] = {"memory_kib": hashing.memory_kib, "time_cost": hashing.time_cost,
                              "parallelism": hashing.parallelism, "hash_threads": hashing.thread_count()}
        result["hashing_alone_before"] = ceiling
        result["load_average_before"] = [round(x, 1) for x in load_before]
        result["stored_hash_parameters"] = stored_parameters(db_url, result.pop("usernames_prefix"))
    finally:
        serve.shutdown()
        ray.shutdown()
    result["hashing_alone_after"] = hashing_ceiling()
    print("RESULT " + json.dumps(result), flush=True)


def run_config(name: str, args) -> dict:
    env = {**os.environ, **CONFIGS[name]}
    cmd = [sys.executable, "-m", "bench.logins", "--child", "--clients", str(args.clients), "--users", str(args.users),
           "--rounds", str(args.rounds), "--noop-seconds", str(args.noop_seconds)]
    out = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, cwd=ROOT)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"setting {name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running system; default: start one per setting")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of: {', '.join(CONFIGS)}")
    parser.add_argument("--ingress", choices=["default", "haproxy"], default="default")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="logins per user")
    parser.add_argument("--noop-seconds", type=int, default=10)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingress == "haproxy":
        use_haproxy_ingress()
    if args.child:
        child(args)
        return

    started = datetime.now(timezone.utc)
    report: dict = {"benchmark": "logins", "started": started.isoformat(), "ingress": args.ingress,
                    "clients": args.clients, "users": args.users, "logins_per_user": args.rounds,
                    "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
                    "runs": {}}
    if args.url:
        report["url"] = args.url
        report["runs"]["as-configured"] = drive(args.url, args.clients, args.users, args.rounds, args.noop_seconds)
        report["runs"]["as-configured"].pop("usernames_prefix")
    else:
        for name in args.configs.split(","):
            print(f"[{name}] starting the system ...", flush=True)
            report["runs"][name] = run_config(name, args)
    for name, run in report["runs"].items():
        print(f"{name:>24}: {run['logins']['per_second']:7.1f} logins/s (p50 {run['logins']['p50_ms']} ms, "
              f"p99 {run['logins']['p99_ms']} ms)  {run['registrations']['per_second']:7.1f} registrations/s  "
              f"no-op {run['noop_get_api']['per_second']:7.1f} req/s  "
              f"hashing alone {run.get('hashing_alone_before', {}).get('verifies_per_second')}/"
              f"{run.get('hashing_alone_after', {}).get('verifies_per_second')} verifies/s before/after  hashes: {run.get('stored_hash_parameters')}"
              f"  refused/errors: {run['registrations'].get('refused')}/{run['registrations'].get('errors')} "
              f"registering, {run['logins'].get('refused')}/{run['logins'].get('errors')} logging in")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"logins-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
