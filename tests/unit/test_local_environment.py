"""ticketing.local's environment bookkeeping: what start_local sets, stop() puts back (no Ray here)."""
from __future__ import annotations

import os

from ticketing.local import LocalSystem, environment_of, restore_environment


def test_restoring_puts_back_values_and_unsets_what_was_unset(monkeypatch):
    monkeypatch.setenv("TICKETING_TEST_KEPT", "before")
    monkeypatch.delenv("TICKETING_TEST_NEW", raising=False)
    saved = environment_of(("TICKETING_TEST_KEPT", "TICKETING_TEST_NEW"))
    os.environ["TICKETING_TEST_KEPT"] = "during"
    os.environ["TICKETING_TEST_NEW"] = "during"
    restore_environment(saved)
    assert os.environ["TICKETING_TEST_KEPT"] == "before" and "TICKETING_TEST_NEW" not in os.environ


def test_a_local_system_never_shows_its_database_url():
    system = LocalSystem(url="http://127.0.0.1:1", port=1, data_dir="/tmp/x",
                         database_url="postgresql://user:secret-password@db/ticketing")
    assert "secret-password" not in repr(system)
