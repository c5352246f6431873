"""`ticketing.local.start_local` as a notebook uses it: started, stopped and started again in one Python
process (a notebook run twice in one kernel), each time with its own embedded database."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import os, sys, httpx
from ticketing.local import start_local
for run in range(2):
    system = start_local(data_dir=sys.argv[1], num_cpus=2, dashboard=False)
    print("health", httpx.get(system.url + "/api/health", timeout=30).status_code, flush=True)
    system.stop()
print("DATABASE_URL after", os.environ.get("DATABASE_URL"))
"""


@pytest.mark.own_cluster
def test_a_system_stopped_and_started_again_in_one_process_runs(tmp_path):
    own = ("RAY_ADDRESS", "DATABASE_URL", "TICKETING_URL", "TICKETING_DATA_DIR", "RAY_SERVE_ENABLE_HA_PROXY",
           "RAY_SERVE_THROUGHPUT_OPTIMIZED")
    env = {k: v for k, v in os.environ.items() if k not in own}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "data")], capture_output=True, text=True,
                       timeout=600, env={**env, "RAY_USAGE_STATS_ENABLED": "0"}, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert r.stdout.count("health 200") == 2, r.stdout
    assert "DATABASE_URL after None" in r.stdout  # stop() put the environment back as it found it
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()  # and stopped its database
