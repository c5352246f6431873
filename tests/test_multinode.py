"""The multi-node path on one machine: `tests/multinode_check.py` in its own process (see there)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.own_cluster


def test_category_and_queue_actors_on_two_nodes_work_correctly(database_url):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # never join the session's cluster
    env["DATABASE_URL"] = database_url
    r = subprocess.run([sys.executable, "-m", "tests.multinode_check"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-4000:], r.stderr[-4000:])
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(report["nodes"]) == 2
    # One category actor on each node, the queue actor on the second, and buyers calling from both nodes.
    queue_node = report["placement"].pop("queue")
    assert queue_node in report["nodes"] and queue_node != report["head"]
    assert sorted(report["placement"].values()) == report["nodes"]
    assert sorted(run["node"] for run in report["runs"]) == report["nodes"]
    # More demand than seats: some refused (400 = not enough left), some sold, none oversold.
    assert sum(run["holdsRefused"] for run in report["runs"]) >= 1
    # Only "sold out" refusals: never a lost actor, a conflict or an unknown outcome.
    assert all(set(run["refusals"]) <= {"not_enough_to_hold", "not_enough_to_buy"} for run in report["runs"]), \
        report["runs"]
    for category, figures in report["database"].items():
        assert 0 < figures["soldSeats"] <= figures["totalSeats"], (category, figures)
        assert figures["soldSeats"] + figures["heldSeats"] <= figures["totalSeats"]
    # Joins from both nodes reached the queue actor on one of them: distinct places, all admitted in order.
    assert report["queue"]["places"] == report["queue"]["admitted"] == sum(len(r["places"]) for r in report["runs"])
