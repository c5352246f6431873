"""A `postmaster.pid` left behind by a crash or a reboot (storage.embedded), with real files and processes."""
from __future__ import annotations

import os
import subprocess
import sys

from storage.embedded import server_running, stop_embedded


def pid_file(pgdata, pid: int) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    (pgdata / "postmaster.pid").write_text(f"{pid}\n{pgdata}\n1700000000\n5432\n")
    (pgdata / ".handle_pids.json").write_text("[]")


def test_a_pid_file_whose_process_is_gone_is_no_running_server(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    pid_file(tmp_path / "pgdata", ended.pid)
    assert not server_running(tmp_path / "pgdata")
    assert stop_embedded(tmp_path / "pgdata") is False  # "none running", not a traceback
    assert not (tmp_path / "pgdata" / ".handle_pids.json").exists()


def test_a_pid_file_whose_pid_is_now_another_program_is_no_running_server(tmp_path):
    pid_file(tmp_path / "pgdata", os.getpid())  # this Python process, not a postgres
    assert not server_running(tmp_path / "pgdata")
    assert stop_embedded(tmp_path / "pgdata") is False  # and nothing is signalled


def test_no_pid_file_is_no_running_server(tmp_path):
    assert not server_running(tmp_path / "pgdata")
