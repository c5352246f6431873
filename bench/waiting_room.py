"""Waiting-room benchmark (issue 11): a burst of joins, the admission rate over minutes, and queue updates to
thousands of waiting sockets, on the system as `ticketing serve` starts it (serve_config.yaml through
ticketing.local, HAProxy ingress), with same-run baselines.

    python -m bench.waiting_room                      # 20,000 joins, 600/min over 300 s, 5,000 sockets
    python -m bench.waiting_room --window-s 60 --joins 5000 --sockets 500   # a smoke run

One fresh queued event, created through `POST /api/events` right before the clock starts (no warm-up
join: the first buyer counts), and buyers inserted straight into the database with tokens signed by the
server's secret (logins are measured by bench/logins.py). Load generator: wrk (C, two threads), each
thread sending its share of the joins, one distinct buyer each; its connections send until the share
has gone out, then wait idle until it is answered (BURST_LUA says why). Three measurements, in order:

  join burst   `--joins` buyers `POST /api/events/{id}/queue` at `--connections` connections: joins/s,
               p50/p99 (wrk), and the database afterwards: exactly `--joins` entries, places 1..joins.
               Baseline: the no-op `GET /api` with the same script, connections and request count.
  sockets      (if the server speaks the waiting-room push of docs/websocket.md: a `join-queue`
               message answered and followed by `queue-status`) `--sockets` lean WebSocket clients in a
               process of their own, one buyer each from the back of the queue, join the event's queue
               status. Baseline: every socket sends one `heartbeat` at once, round trip (5,000 replies
               through the same replica). An `error` "Unknown event" to `join-queue` → "not available".
  admission    the event admits at `--rate` per minute meanwhile; over `--window-s` seconds the
               admissions committed (queue_entries.admitted_at) per minute, against the set rate
               (target within ±5 %), overall and minute by minute. During the same window each socket
               records every queue-status; afterwards, for every admission step (a distinct admitted_at)
               and every socket, the delay until that socket showed a peopleAhead at least that small:
               p50/p99 (the step's admitted_at is stamped before its commit, so the commit counts).

Writes bench/results/waiting_room-<time>.json. Needs `wrk` (Debian package).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from bench.buy_path import COMMON_LUA, Buyers, lua, wrk_until_done
from bench.lean_ws import open_all
from bench.rush import RESULTS, database, free_port
from bench.ws_fanout import raise_open_files
from ticketing.cli import use_haproxy_ingress

# Each thread sends its share of TOTAL requests, one token each (the same script for the joins and the
# no-op baseline: only METHOD, PATH and EXPECT differ). Once a thread has sent its share, its connections
# wait (delay) instead of sending more until the share is answered: an extra join would be answered at
# once and could end the thread while first joins are still in flight, and a request cut off when wrk
# stops is cancelled by the server (that buyer would never have joined). wrk calls request() once on the
# first thread before the run, only to check the request, and never sends it: that call must not use up
# a buyer.
BURST_LUA = COMMON_LUA + """
KEYS = {"ok", "other", "errors"}
local tokens = lines(os.getenv("TOKENS_FILE"))
function init(args)
  counter = id
  sent, answered, ok, other, errors = 0, 0, 0, 0, 0
  share = math.floor(TOTAL / NTHREADS)
  checked = id ~= 0
end
function delay()
  if sent >= share then return 3600000 end  -- this connection is done: idle until wrk stops
  return 0
end
local function make(token)
  local body = nil
  if METHOD == "POST" then body = "" end  -- Content-Length: 0
  return wrk.format(METHOD, PATH, {["Authorization"] = "Bearer " .. token}, body)
end
function request()
  if not checked then  -- wrk's check of the script, before the run
    checked = true
    return make(tokens[1])
  end
  first_us = first_us or now_us()
  sent = sent + 1
  local token = tokens[(counter % #tokens) + 1]
  counter = counter + NTHREADS
  return make(token)
end
function response(status, headers, body)
  answered = answered + 1
  if status == EXPECT then ok = ok + 1 elseif status >= 500 then errors = errors + 1 else other = other + 1 end
  if answered == share then finish() end
end
"""

UNKNOWN_EVENT = "Unknown event"


# ---- pure helpers (tests/unit/test_waiting_room_bench.py) ---------------------------------------------


def admission_rate(admitted_at: list[float], start: float, end: float, per_minute: float) -> dict:
    """Admissions per minute over [start, end) from their commit stamps (epoch seconds), against the set
    rate: overall and per whole minute of the window."""
    inside = [t for t in admitted_at if start <= t < end]
    minutes = (end - start) / 60.0
    measured = len(inside) / minutes if minutes > 0 else 0.0
    buckets = [0] * int(minutes)
    for t in inside:
        i = int((t - start) // 60)
        if i < len(buckets):
            buckets[i] += 1
    ratios = [round(b / per_minute, 4) for b in buckets]
    steps = sorted(set(inside))
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    return {"set_per_minute": per_minute, "window_s": round(end - start, 1), "admitted": len(inside),
            "per_minute": round(measured, 2), "ratio": round(measured / per_minute, 4),
            "within_5_percent": abs(measured / per_minute - 1) <= 0.05,
            "per_whole_minute": buckets, "per_whole_minute_ratio": ratios,
            "steps": len(steps), "step_interval_s_mean": round(sum(gaps) / len(gaps), 3) if gaps else None,
            "step_interval_s_max": round(max(gaps), 3) if gaps else None}


def admission_steps(admitted_at: list[float]) -> list[tuple[float, int]]:
    """(time, admitted so far) after each admission step (a distinct stamp: one tick's batch)."""
    out: list[tuple[float, int]] = []
    total = 0
    for t in sorted(admitted_at):
        total += 1
        if out and out[-1][0] == t:
            out[-1] = (t, total)
        else:
            out.append((t, total))
    return out


def status_delays(place: int, updates: list[tuple[int, float]], steps: list[tuple[float, int]],
                  interval: float = 0.0) -> tuple[list[float], list[float], int]:
    """For one waiting socket at `place`: the seconds from each admission step to the first queue-status
    (peopleAhead, arrival time) showing a peopleAhead at least that small, for the steps after its first
    status that changed its position; the same delays counted from when the server's coalescing let it
    push again (no sooner than `interval` after the socket's previous status); and how many such steps it
    never showed."""
    if not updates:
        return [], [], 0
    joined_at, first_ahead = updates[0][1], updates[0][0]
    best, lowest = [], None
    for ahead, arrived in updates:  # the smallest peopleAhead shown so far, over time
        lowest = ahead if lowest is None else min(lowest, ahead)
        best.append((lowest, arrived))
    delays, beyond, never, j = [], [], 0, 0
    for t, admitted in steps:
        target = max(0, place - 1 - admitted)
        if t < joined_at or target >= first_ahead:
            continue
        while j < len(best) and best[j][0] > target:
            j += 1
        if j == len(best):
            never += 1
            continue
        arrived = best[j][1]
        delays.append(max(0.0, arrived - t))
        allowed = t if j == 0 else max(t, best[j - 1][1] + interval)  # after the status before it
        beyond.append(max(0.0, arrived - allowed))
    return delays, beyond, never


def percentiles_ms(values: list[float]) -> dict:
    from bench.rush import percentile

    if not values:
        return {"count": 0}
    return {"count": len(values), "p50": round(percentile(values, 50) * 1e3, 1),
            "p90": round(percentile(values, 90) * 1e3, 1), "p99": round(percentile(values, 99) * 1e3, 1),
            "max": round(max(values) * 1e3, 1)}


# ---- the system's side ---------------------------------------------------------------------------------


def create_queued_event(base: str, organizer_token: str, seats: int, **sale) -> int:
    body = {"eventName": f"Bench waiting room {time.time_ns()}", "eventCategory": "bench",
            "eventDate": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat(), "location": "Arena",
            "ticketCategories": [{"categoryName": "Floor", "price": "10.00", "totalSeats": seats}],
            "queueEnabled": True, **sale}
    r = httpx.post(base + "/api/events", json=body, headers={"Authorization": "Bearer " + organizer_token},
                   timeout=120)
    r.raise_for_status()
    return r.json()["idEvent"]


def burst(base: str, work: Path, name: str, tokens: list[str], *, method: str, path: str, expect: int,
          connections: int) -> dict:
    tokens_file = work / f"{name}.tokens"
    tokens_file.write_text("\n".join(tokens))
    script = lua(work, name, BURST_LUA, NTHREADS=2, TOTAL=len(tokens), METHOD=method, PATH=path, EXPECT=expect)
    result = wrk_until_done(base + path, connections, script, {"TOKENS_FILE": str(tokens_file)}, timeout_s=60)
    raw = result.pop("raw", "")
    for line in raw.splitlines():  # a request lost to a socket error means a buyer who never joined
        if "Socket errors" in line or "Non-2xx" in line:
            result.setdefault("wrk_notes", []).append(line.strip())
    if result.get("duration_us"):
        result["answered_per_second"] = round(len(tokens) / (result["duration_us"] / 1e6), 1)
    result.update(sent=len(tokens), connections=connections)
    return result


def places_report(db_url: str, event_id: int, joins: int) -> dict:
    from sqlalchemy import text

    with database(db_url) as conn:
        row = conn.execute(text(
            "SELECT count(*) AS n, count(DISTINCT user_id) AS users, count(DISTINCT place) AS places,"
            " min(place) AS first, max(place) AS last FROM queue_entries WHERE event_id = :e"),
            {"e": event_id}).one()
    report = dict(row._mapping)
    report["exact"] = report == {"n": joins, "users": joins, "places": joins, "first": 1, "last": joins}
    return report


def admitted_stamps(db_url: str, event_id: int) -> list[float]:
    from sqlalchemy import text

    with database(db_url) as conn:
        return [float(t) for t in conn.execute(text(
            "SELECT extract(epoch FROM admitted_at) FROM queue_entries WHERE event_id = :e AND admitted_at IS NOT NULL"),
            {"e": event_id}).scalars()]


def places_of(db_url: str, event_id: int, user_ids: list[int]) -> dict[int, int]:
    from sqlalchemy import text

    with database(db_url) as conn:
        rows = conn.execute(text("SELECT user_id, place FROM queue_entries WHERE event_id = :e AND user_id = ANY(:u)"),
                            {"e": event_id, "u": user_ids}).all()
    return {r.user_id: r.place for r in rows}


# ---- the sockets -----------------------------------------------------------------------------------------


async def probe_queue_push(ws_base: str, token: str, event_id: int) -> str | None:
    """None if the server answers `join-queue` with a queue-status; else why not (the push is another
    branch's work: until it is merged, the server answers an unknown-message error)."""
    from websockets.asyncio.client import connect

    async with connect(f"{ws_base}?token={token}", proxy=None, open_timeout=30) as ws:
        await ws.send(json.dumps({"event": "join-queue", "data": {"eventId": event_id}}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg.get("event") == "queue-status":
                return None
            if msg.get("event") == "error":
                message = str(msg.get("data", {}).get("message", ""))
                return f"not available: the server answered join-queue with error {message!r}" \
                    if UNKNOWN_EVENT in message else f"join-queue refused: {message!r}"
    return "not available: no queue-status within 30 s"


def realtime_stats(base: str) -> dict:
    """The realtime replica's figures. Ask only while it has a free request slot: every open socket holds
    one of its max_ongoing_requests (5,000), and a request past them waits in Serve's queue."""
    try:
        return httpx.get(f"{base}/realtime/stats", timeout=30).json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


class QueueWatcher:
    """One waiting buyer's socket: every queue-status as (peopleAhead, arrival time), and heartbeat replies."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.updates: list[tuple[int, float]] = []
        self.place: int | None = None
        self.joined = asyncio.Event()
        self.heartbeat_sent = 0.0
        self.heartbeat_rtt: float | None = None
        self.socket = None
        self.failed: str | None = None

    def on_text(self, text: str, arrived: float) -> None:
        msg = json.loads(text)
        event, data = msg.get("event"), msg.get("data") or {}
        if event == "queue-status":
            if data.get("peopleAhead") is not None:
                self.updates.append((int(data["peopleAhead"]), arrived))
                self.place = data.get("place", self.place)
                self.joined.set()
        elif event == "heartbeat-response" and self.heartbeat_sent and self.heartbeat_rtt is None:
            self.heartbeat_rtt = arrived - self.heartbeat_sent
        elif event == "error":
            self.failed = f"error: {data.get('message')}"
            self.joined.set()

    async def open(self, url: str, event_id: int) -> None:
        from bench.lean_ws import connect

        try:
            self.socket = await connect(f"{url}?token={self.token}", self.on_text, timeout=120)
            self.socket.send_text(json.dumps({"event": "join-queue", "data": {"eventId": event_id}}))
            await asyncio.wait_for(self.joined.wait(), 120)
        except Exception as exc:  # a failed socket is reported, the run goes on
            self.failed = f"{type(exc).__name__}: {exc}"


def watch(url: str, event_id: int, tokens: list[str], connect_parallel: int, nice: int, interval: float,
          pipe) -> None:
    """The sockets' process (at Ray's worker niceness by default, like bench/ws_fanout.py)."""
    os.nice(nice)

    async def run() -> None:
        watchers = [QueueWatcher(t) for t in tokens]
        t = time.perf_counter()
        await open_all(watchers, url, event_id, connect_parallel)
        alive = [w for w in watchers if not w.failed]
        # Baseline: one heartbeat from every socket at once, round trip.
        for w in alive:
            w.heartbeat_sent = time.time()
            w.socket.send_text(json.dumps({"event": "heartbeat"}))
        await asyncio.sleep(0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(w.heartbeat_rtt is None for w in alive):
            await asyncio.sleep(0.05)
        pipe.send({"connect_seconds": time.perf_counter() - t, "failures": [w.failed for w in watchers if w.failed],
                   "heartbeat_rtts": [w.heartbeat_rtt for w in alive if w.heartbeat_rtt is not None],
                   "heartbeat_missing": sum(1 for w in alive if w.heartbeat_rtt is None)})
        loop = asyncio.get_running_loop()
        window_start = await loop.run_in_executor(None, pipe.recv)
        steps = await loop.run_in_executor(None, pipe.recv)  # the window is over: the admission steps
        for w in alive:
            w.socket.close()
        delays, beyond, never, updates = [], [], 0, []
        for w in alive:
            d, b, n = status_delays(w.place or 0, w.updates, steps, interval)
            delays.extend(d)
            beyond.extend(b)
            never += n
            updates.append(sum(1 for _, t in w.updates if t >= window_start))
        pipe.send({"delay": percentiles_ms(delays), "beyond_interval": percentiles_ms(beyond),
                   "never_shown": never, "sockets": len(alive),
                   "updates_per_socket": {"min": min(updates, default=0), "max": max(updates, default=0),
                                          "mean": round(sum(updates) / len(updates), 1) if updates else 0},
                   "closed_during_run": sum(1 for w in alive if w.socket.closed.done())})

    try:
        import uvloop
        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


# ---- the run -----------------------------------------------------------------------------------------------


def run(args, work: Path, report: dict) -> None:
    """The three measurements into `report` (kept as far as it got if a later one fails)."""
    import multiprocessing

    from ticketing import settings
    from ticketing.local import start_local

    system = start_local(data_dir=work / "system", num_cpus=2, dashboard=False)
    try:
        base, db_url = system.url, system.database_url
        buyers = Buyers(db_url, settings.jwt_secret(system.data_dir))
        _, organizer = buyers.make(1, role="organizer")[0]
        people = buyers.make(args.joins)
        tokens = [t for _, t in people]

        print(f"no-op ceiling: GET /api x {args.joins}, c{args.connections} ...", flush=True)
        burst(base, work, "warm", tokens[:2000], method="GET", path="/api", expect=200,
              connections=args.connections)  # the proxy's own warm-up; no event is involved
        report["noop"] = burst(base, work, "noop", tokens, method="GET", path="/api", expect=200,
                               connections=args.connections)

        event = create_queued_event(base, organizer, seats=1000, admissionPerMinute=args.rate,
                                    shoppingMinutes=120)
        print(f"join burst: {args.joins} buyers join event {event}, c{args.connections} ...", flush=True)
        joined = burst(base, work, "joins", tokens, method="POST", path=f"/api/events/{event}/queue", expect=201,
                       connections=args.connections)
        joined["places"] = places_report(db_url, event, args.joins)
        report["join_burst"] = joined
        if report["noop"].get("answered_per_second") and joined.get("answered_per_second"):
            report["join_burst"]["ratio_to_noop"] = round(
                joined["answered_per_second"] / report["noop"]["answered_per_second"], 3)
        print(json.dumps({k: v for k, v in joined.items()}, default=str), flush=True)

        # The sockets: the last buyers in the queue (not admitted within the window).
        socket_users = people[-args.sockets:] if args.sockets else []
        pipe = proc = None
        ws_base = base.replace("http://", "ws://") + "/realtime"
        if socket_users:
            why_not = asyncio.run(probe_queue_push(ws_base, socket_users[0][1], event))
            report["sockets"] = {"sockets": len(socket_users), "available": why_not is None}
            if why_not:
                report["sockets"]["note"] = why_not
                print(why_not, flush=True)
            else:
                interval = float(realtime_stats(base).get("queuePushIntervalS") or 0.0)
                report["sockets"]["push_interval_s"] = interval
                ours, theirs = multiprocessing.Pipe()
                proc = multiprocessing.get_context("spawn").Process(
                    target=watch, args=(ws_base, event, [t for _, t in socket_users], args.connect_parallel,
                                        args.client_nice, interval, theirs), daemon=True)
                proc.start()
                pipe = ours
                opened = pipe.recv()
                report["sockets"].update(
                    connect_seconds=round(opened["connect_seconds"], 1), failed=len(opened["failures"]),
                    failures=sorted(set(opened["failures"]))[:5],
                    heartbeat_rtt_ms=percentiles_ms(opened["heartbeat_rtts"]),
                    heartbeat_missing=opened["heartbeat_missing"])
                print(f"sockets: {report['sockets']}", flush=True)

        start = time.time()
        if pipe:
            pipe.send(start)
        print(f"admission window: {args.window_s:.0f} s at {args.rate}/min ...", flush=True)
        time.sleep(args.window_s)
        end = time.time()
        stamps = admitted_stamps(db_url, event)
        report["admission"] = admission_rate(stamps, start, end, args.rate)
        if pipe:
            time.sleep(interval + 3.0)  # the sockets listen a little longer: the window's last steps can show
            steps = [(t, n) for t, n in admission_steps(stamps) if start <= t < end]
            pipe.send(steps)
            seen = pipe.recv()
            proc.join(30)
            report["sockets"]["server_stats"] = realtime_stats(base)  # the sockets are closed: a slot is free
            report["sockets"].update(admission_to_visible_ms=seen["delay"],
                                     beyond_push_interval_ms=seen["beyond_interval"], never_shown=seen["never_shown"],
                                     updates_per_socket=seen["updates_per_socket"],
                                     closed_during_run=seen["closed_during_run"])
            rtt = report["sockets"]["heartbeat_rtt_ms"]
            for key, name in (("delay", "p99_over_heartbeat_p99"), ("beyond_interval", "beyond_p99_over_heartbeat_p99")):
                if rtt.get("p99") and seen[key].get("p99"):
                    report["sockets"][name] = round(seen[key]["p99"] / rtt["p99"], 2)
        report["figures_after"] = httpx.get(f"{base}/api/events/{event}/queue/figures", timeout=30).json()
        report["event_id"] = event
    finally:
        system.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=1000, help="wrk connections for the burst and no-op")
    parser.add_argument("--rate", type=int, default=600, help="admissionPerMinute of the event")
    parser.add_argument("--window-s", type=float, default=300.0, help="the admission window (seconds)")
    parser.add_argument("--sockets", type=int, default=5000, help="waiting sockets (0: none)")
    parser.add_argument("--connect-parallel", type=int, default=100)
    parser.add_argument("--client-nice", type=int, default=15, help="niceness of the sockets' process")
    args = parser.parse_args()
    if args.sockets > args.joins:
        parser.error("--sockets must not exceed --joins (each socket is a waiting buyer)")

    limit = raise_open_files(args.sockets * 2 + args.connections + 1024)
    use_haproxy_ingress()
    # Free ports for HAProxy's stats and metrics (another system on this machine may hold the fixed ones),
    # and a connection limit with room for every socket and the burst's connections.
    for name in ("RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_HAPROXY_STATS_PORT"):
        os.environ.setdefault(name, str(free_port()))
    # HAProxy asks for about 2 descriptors a connection and 4,000 more (it refuses to start past the limit).
    maxconn = min(max(4096, args.sockets + args.connections + 1024), (limit - 4200) // 2)
    os.environ.setdefault("RAY_SERVE_HAPROXY_MAXCONN", str(maxconn))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    work = Path(tempfile.mkdtemp(prefix="ticketing-waiting-room-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"waiting_room-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    load = os.getloadavg()
    report = {"started": datetime.now(timezone.utc).isoformat(), "machine": {"cpus": os.cpu_count()},
              "load_average_before": [round(x, 2) for x in load], "config": vars(args),
              "env": {k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")}}
    try:
        run(args, work, report)
    finally:
        report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        out.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
