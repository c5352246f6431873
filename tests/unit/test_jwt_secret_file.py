"""The per-install JWT secret in the data folder (ticketing.settings.jwt_secret), with real files and processes."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ticketing.settings import jwt_secret


def test_replicas_that_start_at_once_all_read_the_same_whole_secret(tmp_path, monkeypatch):
    """Threads stand in for replica processes: the file system is what they race on."""
    monkeypatch.delenv("JWT_SECRET", raising=False)
    for round_ in range(50):
        folder = tmp_path / str(round_)
        start = threading.Barrier(16)

        def read(_):
            start.wait()
            return jwt_secret(folder)
        with ThreadPoolExecutor(16) as pool:
            secrets = list(pool.map(read, range(16)))
        assert len(set(secrets)) == 1 and len(secrets[0]) >= 60, secrets
        assert [p.name for p in folder.iterdir()] == ["jwt_secret"]  # no draft left behind


def test_an_empty_secret_file_is_an_error_not_an_empty_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("JWT_SECRET", raising=False)
    (tmp_path / "jwt_secret").write_text("")
    with pytest.raises(RuntimeError, match="is empty"):
        jwt_secret(tmp_path)


def test_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("JWT_SECRET", "from-the-environment")
    assert jwt_secret(tmp_path) == "from-the-environment"
    assert not (tmp_path / "jwt_secret").exists()
