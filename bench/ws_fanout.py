"""WebSocket fan-out benchmark: W sockets watch one event while a rush of holds hits one category.

    python -m bench.ws_fanout --sockets 1000
    python -m bench.ws_fanout --sockets 5000 --holds 5000
    python -m bench.ws_fanout --sockets 1000 --endpoint both    # plain, then Socket.IO, in one run

`--endpoint` picks the plain WebSocket endpoint (/realtime), the Socket.IO one (/socket.io/, namespace
/realtime, WebSocket transport), or both one after the other on the same cluster, each with an event of
its own; with both, the report gives the Socket.IO/plain ratios of the change → visible delay.

Starts its own cluster (2 CPUs, embedded PostgreSQL unless DATABASE_URL is set) with both Serve
applications, opens W sockets (one watcher user) that join the event room, then sends `--holds` holds of
distinct buyers to the category's actor (as the gateway does, `--in-flight` at a time) and finally
releases them all. Every `availability-update` carries `timestamp` = the category actor's commit time
(stamped right after the batch committed), so on every socket we measure commit → receipt. Reported:
p50/p90/p99/max of that delay over all (socket, update) pairs, updates/s delivered in total, updates
per socket (min/median), and starved sockets (those that did not end on the final figures).
The sockets live in a process of their own, read by a lean asyncio client (bench/lean_ws.py); the rush
is driven from the main process. Both share the machine with the server, so their CPU use is part of
the delay.
Writes bench/results/ws_fanout-W<W>-<time>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.lean_ws import open_all
from bench.rush import RESULTS, database, free_port, make_category, percentile  # shared set-up
from ticketing.cli import use_haproxy_ingress


def raise_open_files(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(wanted, soft)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def commit_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


SIO_PREFIX = "42/realtime,"  # a Socket.IO EVENT of the namespace, as engine.io frames it


class Watcher:
    """One socket in the room: records the commit time and the receipt time of every availability update.
    `socketio`: the socket speaks engine.io/Socket.IO v4 over WebSocket (the few packet kinds a listener
    meets, framed by hand so the load generator stays as lean as for the plain endpoint)."""

    def __init__(self, socketio: bool = False, token: str = "") -> None:
        self.socketio = socketio
        self.token = token
        self.event_id = 0
        self.seen: list[tuple[float, float]] = []  # (commit time, receipt time)
        self.last: dict | None = None
        self.last_at = 0.0
        self.joined = asyncio.Event()
        self.socket = None
        self.closed: str | None = None

    def on_text(self, text: str, arrived: float) -> None:
        if self.socketio:
            if not text.startswith(SIO_PREFIX):
                self._engine(text)
                return
            event, data = json.loads(text[len(SIO_PREFIX):])[:2]
        else:
            msg = json.loads(text)
            event, data = msg["event"], msg["data"]
        if event != "availability-update":
            return
        self.last, self.last_at = data, arrived
        self.joined.set()
        self.seen.append((commit_time(data["timestamp"]), arrived))

    def since(self, started: float) -> list[tuple[float, float]]:
        """The updates of changes committed after the rush began (the join's figures are older)."""
        return [(c, a) for c, a in self.seen if c >= started]

    def _engine(self, text: str) -> None:
        if text.startswith("40/realtime,"):  # namespace connected: join the room
            self.socket.send_text(SIO_PREFIX + json.dumps(["join-event-room", {"eventId": self.event_id}]))
        elif text == "2":  # engine.io ping → pong
            self.socket.send_text("3")
        elif text.startswith("44/realtime,"):
            self.closed = f"connect_error: {text}"

    async def open(self, url: str, event_id: int) -> None:
        from bench.lean_ws import connect

        self.event_id = event_id
        try:
            self.socket = await connect(url, self.on_text, timeout=120)
            if self.socketio:  # connect to the namespace; it joins once connected (_engine)
                self.socket.send_text("40/realtime," + json.dumps({"token": self.token}))
            else:
                self.socket.send_text(json.dumps({"event": "join-event-room", "data": {"eventId": event_id}}))
            await asyncio.wait_for(self.joined.wait(), 120)
        except Exception as exc:  # reported as a failed socket, the run goes on
            self.closed = f"{type(exc).__name__}: {exc}"

    def final(self, started: float) -> bool:
        """Shows the figures after the rush: everything released, committed after the rush began."""
        return self.last is not None and self.last["lockedTickets"] == 0 and bool(self.last["timestamp"]) \
            and commit_time(self.last["timestamp"]) >= started


def visibility_delays_ms(seen_by_socket: list[list[tuple[float, float]]], changes: list[float]) -> dict:
    """Change → visible, for every change and every socket. A socket that is behind gets the newest
    figures only (coalescing), so an update's own delay flatters: the changes it superseded became
    visible on that socket only then. `changes` are the decision times of every batch that changed the
    category (from the database, a little before each commit); a change is visible on a socket from its
    first update committed at or after it."""
    import numpy as np

    times = np.array(sorted(changes))
    if not len(times):
        return {}
    delays, never = [], 0
    for seen in seen_by_socket:
        committed = np.array([c for c, _ in seen])
        arrived = np.array([a for _, a in seen])
        first = np.searchsorted(committed, times, side="left")  # first update at least as new
        shown = first < len(committed)
        never += int((~shown).sum())
        delays.append((arrived[first[shown]] - times[shown]).astype(np.float32))
    flat = np.concatenate(delays) * 1e3
    return {"changes": int(len(times)), "pairs": int(flat.size), "never_shown": never,
            "p50": float(np.percentile(flat, 50)), "p90": float(np.percentile(flat, 90)),
            "p99": float(np.percentile(flat, 99)), "max": float(flat.max()), "mean": float(flat.mean())}


def watch(url: str, event_id: int, sockets: int, connect_parallel: int, nice: int, pipe,
          socketio: bool = False, token: str = "") -> None:
    """The watchers' process: the sockets are read here, never in the process (and under the GIL) that
    drives the rush. It runs at Ray's worker niceness (15) by default, so that it does not preempt the
    server it measures (at niceness 0 it would get ~28x the CPU share of a Ray worker)."""
    os.nice(nice)

    async def run() -> None:
        watchers = [Watcher(socketio, token) for _ in range(sockets)]
        connect_seconds = await open_all(watchers, url, event_id, connect_parallel)
        pipe.send({"connect_seconds": connect_seconds, "failures": [w.closed for w in watchers if w.closed]})
        loop = asyncio.get_running_loop()
        started, patience = await loop.run_in_executor(None, pipe.recv)  # the rush is about to start
        changes = await loop.run_in_executor(None, pipe.recv)  # the rush is over: its changes' times
        deadline = time.monotonic() + patience
        alive = [w for w in watchers if not w.closed]
        while time.monotonic() < deadline and not all(w.final(started) for w in alive):
            await asyncio.sleep(0.05)
        for w in alive:
            w.socket.close()
        measured = [w.since(started) for w in alive]
        pipe.send({"delays": [a - c for seen in measured for c, a in seen],
                   "visible_ms": visibility_delays_ms(measured, changes),
                   "per_socket": [len(seen) for seen in measured],
                   "last_receipt": max((a for seen in measured for _, a in seen), default=0.0),
                   "starved": sum(1 for w in alive if not w.final(started)),
                   "closed_during_run": sorted({w.socket.closed.result() for w in alive if w.socket.closed.done()})[:5]})
    try:
        import uvloop  # installed with Serve (uvicorn[standard]); a third of the client's CPU saved
        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


async def rush(db_url: str, event_id: int, category_id: int, users: list[int], in_flight: int,
               rate: float = 0.0) -> dict:
    """Holds of distinct buyers through the category actor, then each released: every one a change.
    `rate` > 0 paces the calls (changes per second); 0 sends them as fast as the actor takes them."""
    from actors.client import CategoryActors
    from domain.inventory import HoldRequest, ReleaseRequest
    from ticketing.rush import CallRush

    client = CategoryActors(db_url, {"hold_seconds": 3600, "max_per_order": 10})
    driver = CallRush(in_flight, rate)  # paced over both phases, from the first hold
    holds = await driver.run(users, lambda user: client.call(event_id, category_id, HoldRequest(user, 1)))
    holds_s = time.perf_counter() - driver.start
    releases = await driver.run(users, lambda user: client.call(event_id, category_id, ReleaseRequest(user)))
    elapsed = time.perf_counter() - driver.start
    done = {"holds": holds.ok, "releases": releases.ok, "refused": holds.refused + releases.refused}
    return {**done, "seconds": elapsed, "changes_per_second": (done["holds"] + done["releases"]) / elapsed,
            "holds_per_second": done["holds"] / holds_s}


def change_times(db_url: str, category_id: int, since: float) -> list[float]:
    """When each batch that changed the category decided (one time per batch: its holds' created_at
    and closed_at), from the database: every change, including those no socket was sent."""
    from sqlalchemy import text

    with database(db_url) as conn:
        rows = conn.execute(text(
            "SELECT extract(epoch FROM t) FROM ("
            " SELECT created_at AS t FROM holds WHERE category_id = :c"
            " UNION SELECT closed_at FROM holds WHERE category_id = :c AND closed_at IS NOT NULL) AS changes"
            " WHERE t >= to_timestamp(:s)"), {"c": category_id, "s": since}).scalars().all()
    return [float(t) for t in rows]


async def handshake_without_token(url: str) -> str:
    """Sanity check under the chosen ingress: a socket without a token must be refused."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    try:
        async with connect(url, proxy=None, open_timeout=30):
            return "accepted (wrong!)"
    except InvalidStatus as exc:
        return f"refused with HTTP {exc.response.status_code}"


async def measure(ws_url: str, base: str, db_url: str, args, socketio: bool = False, token: str = "") -> dict:
    import multiprocessing

    import httpx

    stats_url = f"{base}/socket.io/stats" if socketio else f"{base}/realtime/stats"
    event_id, category_id, users = make_category(db_url, seats=1_000_000, buyers=args.holds + 1)
    # (Socket.IO refuses at the namespace connect, after the upgrade: the tests cover that.)
    refusal = "n/a" if socketio else await handshake_without_token(ws_url.split("?")[0])
    ours, theirs = multiprocessing.Pipe()
    watchers = multiprocessing.get_context("spawn").Process(
        target=watch, args=(ws_url, event_id, args.sockets, args.connect_parallel, args.client_nice, theirs,
                            socketio, token), daemon=True)
    watchers.start()
    recv = lambda: asyncio.to_thread(ours.recv)  # noqa: E731
    opened = await recv()
    failed = opened["failures"]
    print(f"{args.sockets - len(failed)} sockets joined in {opened['connect_seconds']:.1f}s ({len(failed)} failed)",
          flush=True)
    async with httpx.AsyncClient() as http:
        before = (await http.get(stats_url)).json()

    started = time.time()
    ours.send((started, args.patience))
    load = await rush(db_url, event_id, category_id, users[1:], args.in_flight, args.rate)
    rush_end = time.time()
    ours.send(change_times(db_url, category_id, started))
    print(f"rush done: {load}", flush=True)
    seen = await recv()  # once every socket shows the final figures, or the patience ran out
    watchers.join(30)
    async with httpx.AsyncClient() as http:
        after = (await http.get(stats_url)).json()

    delays, per_socket = seen["delays"], seen["per_socket"]
    last_receipt = seen["last_receipt"] or time.time()
    span = max(1e-9, last_receipt - started)
    return {
        "handshake_without_token": refusal,
        "sockets": args.sockets,
        "sockets_failed": len(failed),
        "failures": sorted(set(failed))[:5],
        "connect_seconds": opened["connect_seconds"],
        "rush": load,
        "updates_delivered": len(delays),
        "updates_per_second": len(delays) / span,
        "delivery_span_seconds": span,
        "drain_after_rush_seconds": max(0.0, last_receipt - rush_end),
        "change_to_visible_ms": seen["visible_ms"],
        "delay_ms": {"p50": percentile(delays, 50) * 1e3, "p90": percentile(delays, 90) * 1e3,
                     "p99": percentile(delays, 99) * 1e3, "max": max(delays, default=float("nan")) * 1e3,
                     "mean": (statistics.fmean(delays) * 1e3) if delays else float("nan")},
        "updates_per_socket": {"min": min(per_socket, default=0), "median": statistics.median(per_socket or [0]),
                               "max": max(per_socket, default=0)},
        "starved_sockets": seen["starved"],
        "closed_during_run": seen["closed_during_run"],
        "server_stats": {"before": before, "after": after},
    }


def ratios(plain: dict, socketio: dict) -> dict:
    """Socket.IO / plain for the change → visible and update delays (the target: within 1.5x)."""
    out = {}
    for key in ("change_to_visible_ms", "delay_ms"):
        for q in ("p50", "p90", "p99"):
            a, b = plain.get(key, {}).get(q), socketio.get(key, {}).get(q)
            if a and b:
                out[f"{key}.{q}"] = round(b / a, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--holds", type=int, default=2000, help="distinct buyers in the rush (each holds, then releases)")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="pace the rush at this many changes/s (0: as fast as the actor takes them)")
    parser.add_argument("--client-nice", type=int, default=15,
                        help="niceness of the sockets' process (Ray runs its workers at 15)")
    parser.add_argument("--replicas", type=int, default=1, help="realtime replicas (sockets spread over them)")
    parser.add_argument("--connect-parallel", type=int, default=100)
    parser.add_argument("--fanout-interval", type=float, default=0.0,
                        help="extra coalescing window of the realtime replica between fan-outs (s)")
    parser.add_argument("--patience", type=float, default=120.0, help="seconds to wait for sockets to settle")
    parser.add_argument("--ingress", choices=["default", "haproxy"], default="default")
    parser.add_argument("--endpoint", choices=["plain", "socketio", "both"], default="plain",
                        help="which realtime endpoint the sockets use; both: one after the other, same cluster")
    args = parser.parse_args()

    limit = raise_open_files(args.sockets * 2 + 1024)
    if args.ingress == "haproxy":
        use_haproxy_ingress()
        # HAProxy's global connection limit is 4,096 by default: room for every socket plus the rush.
        os.environ.setdefault("RAY_SERVE_HAPROXY_MAXCONN", str(max(4096, args.sockets + 2048)))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray
    from ray import serve

    from deployments.app import build_app, build_realtime_app, build_socketio_app
    from domain.auth import issue_token
    from storage import migrate
    from storage.database import normalise_url
    from storage.embedded import start_embedded
    from ticketing.settings import jwt_secret

    work = Path(tempfile.mkdtemp(prefix="ticketing-wsbench-"))
    db_url = normalise_url(os.environ.get("DATABASE_URL") or start_embedded(work / "pgdata", stop_on_exit=True))
    migrate.upgrade(db_url)
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="ticketing", log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app_args = {"database_url": db_url, "data_dir": str(work), "migrate": "0"}
    serve.run(build_app(app_args), name="ticketing", route_prefix="/")
    serve.run(build_realtime_app({**app_args, "fanout_interval_s": args.fanout_interval,
                                  "num_replicas": args.replicas,
                                  "max_ongoing_requests": args.sockets // args.replicas + 100}),
              name="realtime", route_prefix="/realtime")
    if args.endpoint != "plain":
        serve.run(build_socketio_app({**app_args, "fanout_interval_s": args.fanout_interval,
                                      "num_replicas": args.replicas,
                                      "max_ongoing_requests": args.sockets // args.replicas + 100}),
                  name="socketio", route_prefix="/socket.io")
    base = f"http://127.0.0.1:{port}"
    token = issue_token(1, "bench-watcher", "assistant", jwt_secret(work), 24 * 3600)  # identity only
    ws_url = f"ws://127.0.0.1:{port}/realtime?token={token}"
    sio_url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"

    report = {"started": datetime.now(timezone.utc).isoformat(), "machine": {"cpus": os.cpu_count()},
              "ray": ray.__version__, "ingress": args.ingress, "open_files_limit": limit,
              "env": {k: v for k, v in os.environ.items() if k.startswith(("RAY_SERVE_", "TICKETING_"))},
              "config": vars(args)}
    if args.endpoint == "plain":
        report.update(asyncio.run(measure(ws_url, base, db_url, args)))
    elif args.endpoint == "socketio":
        report.update(asyncio.run(measure(sio_url, base, db_url, args, socketio=True, token=token)))
    else:
        report["plain"] = asyncio.run(measure(ws_url, base, db_url, args))
        report["socketio"] = asyncio.run(measure(sio_url, base, db_url, args, socketio=True, token=token))
        report["socketio_over_plain"] = ratios(report["plain"], report["socketio"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ws_fanout-W{args.sockets}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    shown = {k: ({kk: vv for kk, vv in v.items() if kk != "server_stats"} if isinstance(v, dict) else v)
             for k, v in report.items() if k != "server_stats"}
    print(json.dumps(shown, indent=2, default=str))
    print(f"written to {out}")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
