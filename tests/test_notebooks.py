"""The notebooks run top to bottom with small parameters, so they cannot rot.

Each runs in its own kernel process (nbclient). The ticket-rush and waiting-room notebooks drive this
session's running system (TICKETING_URL), as a user points them at a system already up; the hold-policies
notebook starts its own Ray instance, Serve and embedded database on its own port and data folder (marker
`own_cluster`: it runs before this session's cluster starts). Parameters reach the notebooks' parameters
cell through environment variables.
"""
from __future__ import annotations

import os
from pathlib import Path

import httpx
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def run_notebook(name: str, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), "no parameters cell"
    # The kernel starts its own Ray and Serve; a second HAProxy ingress on this machine would fight the
    # test session's for its fixed ports, so the notebook uses Serve's own proxy.
    own = ("RAY_ADDRESS", "DATABASE_URL", "TICKETING_URL", "RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_THROUGHPUT_OPTIMIZED")
    kernel_env = {k: v for k, v in os.environ.items() if k not in own}
    kernel_env.update(env, RAY_USAGE_STATS_ENABLED="0")
    kernel_env.pop("MPLBACKEND", None)  # the kernel's inline backend turns figures into PNG outputs
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute(env=kernel_env)
    return nb


def outputs(nb: nbformat.NotebookNode) -> str:
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") or str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


def images(nb: nbformat.NotebookNode) -> int:
    return sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))


def stop_leftover_database(data_dir: Path) -> None:
    from storage.embedded import stop_embedded

    stop_embedded(data_dir / "pgdata")


def test_ticket_rush_notebook_against_a_running_system(server, database_url):
    nb = run_notebook("ticket_rush.ipynb", {
        "TICKETING_URL": server,  # this session's system: the notebook starts nothing and stops nothing
        "DATABASE_URL": database_url,  # the read-back also checks the seat ledger in the database
        "RUSH_BUYERS": "14", "RUSH_SEATS": "8", "RUSH_ARRIVAL_SECONDS": "1.5", "RUSH_WATCHERS": "2",
    })
    text = outputs(nb)
    assert "OK: " in text and "none oversold" in text, text[-3000:]
    assert "oversold" in text and "holdP99ms" in text  # the summary table was printed
    assert images(nb) >= 1  # the plots were drawn
    health = httpx.get(server + "/api/health", timeout=30)
    assert health.status_code == 200, health.text  # the system it used is still up


@pytest.mark.own_cluster
def test_compare_hold_policies_notebook_with_its_own_embedded_database(tmp_path):
    try:
        nb = run_notebook("compare_hold_policies.ipynb", {
            "RUSH_BUYERS": "10", "RUSH_SEATS": "6", "RUSH_ARRIVAL_SECONDS": "1", "RUSH_THINK_MAX": "1.5",
            "RUSH_RETRIES": "2", "RUSH_SHORT_HOLD": "1", "RUSH_LONG_HOLD": "30",
            "RUSH_DASHBOARD": "0", "RUSH_NUM_CPUS": "2", "RUSH_DATA_DIR": str(tmp_path),
        })
        text = outputs(nb)
        assert "OK: no policy oversold" in text, text[-3000:]
        assert "short hold" in text and "long hold" in text
        assert images(nb) >= 1
        # The notebook stopped the database it started.
        assert not (tmp_path / "pgdata" / "postmaster.pid").exists()
    finally:
        stop_leftover_database(tmp_path)


def test_waiting_room_rehearsal_notebook_against_a_running_system(server, database_url, jwt_secret):
    nb = run_notebook("waiting_room_rehearsal.ipynb", {
        "TICKETING_URL": server, "DATABASE_URL": database_url,
        "JWT_SECRET": jwt_secret,  # the running system's: the notebook mints its buyers
        "RUSH_BUYERS": "60", "RUSH_SEATS": "20", "RUSH_ARRIVAL_SECONDS": "1",
        "RUSH_ADMISSION_PER_MINUTE": "6000", "RUSH_POLL_MIN": "0.3", "RUSH_POLL_MAX": "2", "RUSH_CONCURRENCY": "64",
    })
    text = outputs(nb)
    assert "OK: neither run oversold" in text and "admitted from the queue" in text, text[-3000:]
    assert "queue off" in text and "queue on" in text and "soldOutSeconds" in text  # the table was printed
    assert "60 buyers, minted" in text
    assert images(nb) >= 1
    health = httpx.get(server + "/api/health", timeout=30)
    assert health.status_code == 200, health.text  # the system it used is still up
