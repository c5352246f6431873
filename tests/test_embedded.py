"""The embedded PostgreSQL when several processes start it at once on a new data folder, as the builders of
`serve run serve_config.yaml`'s three applications do on a fresh machine."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# One starter: start (or attach to) the server, then keep a connection busy for 3 s, as a builder running
# its migrations would, and print when the server it used started.
STARTER = """
import sys, time
from pathlib import Path
import psycopg
from storage.embedded import start_embedded

url = start_embedded(Path(sys.argv[1]))
with psycopg.connect(url, autocommit=True) as conn:
    for _ in range(30):
        started = conn.execute("select pg_postmaster_start_time()").fetchone()[0]
        time.sleep(0.1)
print(started.isoformat())
"""


def test_processes_starting_at_once_on_a_new_folder_share_one_server(tmp_path):
    from storage.embedded import stop_embedded

    pgdata = tmp_path / "pgdata"
    root = str(Path(__file__).resolve().parents[1])
    starters = [subprocess.Popen([sys.executable, "-c", STARTER, str(pgdata)], cwd=root, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    try:
        outputs = [p.communicate(timeout=120) for p in starters]  # (stdout, stderr) each
    finally:
        for p in starters:
            p.kill()
        stop_embedded(pgdata)
    # Each one kept its connection (a second restart of the server would have cut the first one's) and
    # saw the same server, started once.
    assert [p.returncode for p in starters] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1, outputs
