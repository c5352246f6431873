"""The `ticketing` command, run as the installed script against the session's server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

TICKETING = str(Path(sys.executable).with_name("ticketing"))


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([TICKETING, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_demo_data_creates_accounts_and_events_once(server, http):
    prefix = f"demo{uuid.uuid4().hex[:6]}"
    first = run("demo-data", "--url", server, "--prefix", prefix, "--users", "2", "--json")
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)
    assert created["organizer"] == f"{prefix}_organizer" and len(created["users"]) == 2
    assert len(created["events"]) == 3
    listed = {e["idEvent"]: e for e in http.get("/api/events").json()}
    for event in created["events"]:
        assert listed[event["id"]]["eventName"] == event["name"]
    # The demo users can log in with the printed password.
    r = http.post("/api/auth/login", json={"username": created["users"][0], "password": created["password"]})
    assert r.status_code == 201
    # A second run finds everything instead of duplicating it.
    again = run("demo-data", "--url", server, "--prefix", prefix, "--users", "2", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["events"] == created["events"]


def test_rush_reports_a_consistent_sale_and_prints_a_table(server, http, database_url):
    r = run("rush", "--url", server, "--buyers", "10", "--seats", "6", "--arrival", "burst",
            "--think-min", "0.05", "--think-max", "0.2", "--retries", "1", "--watchers", "1", "--json",
            "--database-url", database_url)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    summary, final = result["summary"], result["final"]
    assert summary["oversold"] == 0 and summary["consistent"] is True
    assert summary["serverErrors"] == 0
    # 10 buyers wanting 1-2 seats each for 6 seats: some holds must have been refused.
    assert summary["holdsGranted"] >= 1 and summary["holdsRefused"] >= 1
    assert summary["holdP50ms"] is not None and summary["holdP99ms"] >= summary["holdP50ms"]
    # The server agrees: the organizer's orders are the seats sold, within the seats on sale.
    tickets = http.get(f"/api/events/{result['eventId']}/tickets").json()[0]
    assert tickets["reservedSeats"] == final["soldByOrders"] == summary["soldSeats"] <= 6
    # And the database's seat ledger: counters equal the rows, nothing oversold.
    assert final["ledger"]["countersMatchRows"] and final["ledger"]["oversold"] == 0, final["ledger"]
    assert final["ledger"]["sold_rows"] == final["soldByOrders"]
    assert "buyers" in r.stderr  # the progress bar


def test_rush_text_output_is_a_table(server):
    r = run("rush", "--url", server, "--buyers", "2", "--seats", "5", "--arrival", "burst", "--quiet",
            "--think-min", "0", "--think-max", "0.05", "--watchers", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = dict(line.split(None, 1) for line in r.stdout.splitlines()[1:])
    assert lines["oversold"].strip() == "0" and lines["buyers"].strip() == "2"


def test_bad_parameters_are_a_clear_error():
    r = run("rush", "--url", "http://127.0.0.1:9", "--buyers", "0")
    assert r.returncode == 2 and "buyers" in r.stderr and "Traceback" not in r.stderr
    r = run("rush", "--url", "http://127.0.0.1:9", "--mix", "buy:1")
    assert r.returncode == 2 and "mix" in r.stderr


def test_unreachable_server_is_a_clear_error():
    r = run("demo-data", "--url", "http://127.0.0.1:9")
    assert r.returncode == 3 and "cannot reach" in r.stderr and "Traceback" not in r.stderr


def test_stats_lists_categories(server, http):
    from tests.helpers import create_event, register

    event = create_event(http, register(http, "organizer"), seats=4)
    r = run("stats", "--url", server, "--json")
    assert r.returncode == 0, r.stderr
    assert "categories" in json.loads(r.stdout), r.stdout
    mine = [c for c in json.loads(r.stdout)["categories"] if c["eventId"] == event["idEvent"]]
    assert mine and mine[0]["totalSeats"] == 4 and mine[0]["availableSeats"] == 4
    r = run("stats", "--url", server)
    assert r.returncode == 0 and str(event["idEvent"]) in r.stdout


def test_serve_dry_run_prints_the_config_it_would_run(tmp_path):
    from ray.serve.schema import ServeDeploySchema

    r = run("serve", "--dry-run", "--port", "18555", "--data-dir", str(tmp_path), "--hold-seconds", "42")
    assert r.returncode == 0, r.stderr
    config = yaml.safe_load(r.stdout)
    schema = ServeDeploySchema.model_validate(config)
    assert schema.http_options.port == 18555
    app = next(a for a in config["applications"] if a["name"] == "ticketing")
    assert app["args"]["data_dir"] == str(tmp_path)
    assert {d["name"] for d in app["deployments"] if d.get("user_config", {}).get("hold_seconds") == 42} == {
        "Gateway"}
    assert not (tmp_path / "pgdata").exists()  # a dry run starts nothing


def test_serve_on_haproxy_times_out_half_finished_requests():
    from ticketing.cli import ingress_environment

    env = ingress_environment("haproxy")
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"  # the replicas record the request metrics (cheaper)
    # Above the WebSocket ping intervals (20 s plain, 25 s Socket.IO), far below Ray's hour.
    assert 25 < int(env["RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S"]) <= 120
    assert ingress_environment("default") == {}


def test_the_node_settings_go_into_the_environment_unless_set(monkeypatch):
    from ticketing.local import use_node_environment

    monkeypatch.delenv("RAY_metrics_report_interval_ms", raising=False)
    use_node_environment()
    assert os.environ["RAY_metrics_report_interval_ms"] == "2000"  # metrics every 2 s, not in 10 s bursts
    monkeypatch.setenv("RAY_metrics_report_interval_ms", "5000")
    use_node_environment()  # what the caller set wins
    assert os.environ["RAY_metrics_report_interval_ms"] == "5000"


def test_db_stop_without_a_database_says_so(tmp_path):
    r = run("db-stop", "--data-dir", str(tmp_path))
    assert r.returncode == 0 and "no embedded PostgreSQL" in r.stdout


def test_db_stop_stops_the_embedded_database(tmp_path):
    from sqlalchemy import create_engine, text

    from storage.database import normalise_url
    from storage.embedded import start_embedded

    try:  # keeps running after this call, as for `ticketing serve`
        url = start_embedded(tmp_path / "pgdata")
    except subprocess.SubprocessError:  # pgserver gives pg_ctl 10 s to start: once more on a loaded machine
        url = start_embedded(tmp_path / "pgdata")
    engine = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        assert conn.execute(text("show max_connections")).scalar() == "500"
        # New WAL segments are not zero-filled under a rush's commits (storage.embedded), and a data
        # folder whose setting was changed gets it back at the next start.
        assert conn.execute(text("show wal_init_zero")).scalar() == "off"
        conn.execute(text("alter system set wal_init_zero = on"))
        conn.execute(text("select pg_reload_conf()"))
    start_embedded(tmp_path / "pgdata")
    engine.dispose()  # a new session: it reads the settings as the server now has them
    with engine.connect() as conn:
        assert conn.execute(text("show wal_init_zero")).scalar() == "off"
    engine.dispose()
    r = run("db-stop", "--data-dir", str(tmp_path))
    assert r.returncode == 0 and "stopped" in r.stdout, r.stdout + r.stderr
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()
