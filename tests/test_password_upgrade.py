"""Stored password hashes made with other argon2 parameters are upgraded at the next successful login,
through the Serve proxy and the real AuthService."""
from __future__ import annotations

import pytest
from passlib.hash import argon2
from sqlalchemy import text

from domain.auth import Argon2Params, PasswordHasher
from tests.helpers import assert_error, scalar, unchanged, unique
from ticketing import settings

PASSWORD = "0ld-Params-Pass-7"


def params_of(password_hash: str) -> tuple:
    parsed = argon2.from_string(password_hash)
    return parsed.type, parsed.memory_cost, parsed.rounds, parsed.parallelism


def current() -> tuple:
    """The parameters the AuthService replicas run with (they inherit this process's environment)."""
    hashing = settings.password_hashing()
    return "id", hashing.memory_kib, hashing.time_cost, hashing.parallelism


def stored_hash(db, user_id: int) -> str:
    return scalar(db, "SELECT password_hash FROM users WHERE id = :id", id=user_id)


def insert_user(db, password_hash: str) -> tuple[int, str]:
    username = unique("legacy")
    with db.begin() as conn:
        user_id = conn.execute(
            text("INSERT INTO users (username, password_hash, role) VALUES (:u, :h, 'assistant') RETURNING id"),
            {"u": username, "h": password_hash},
        ).scalar()
    return user_id, username


OLD_PARAMS = [
    Argon2Params(memory_kib=65536, time_cost=3, parallelism=4),  # passlib's defaults, used until now
    Argon2Params(memory_kib=19456, time_cost=2, parallelism=2),  # only the parallelism differs
]


@pytest.mark.parametrize("old", OLD_PARAMS, ids=["m64MiB-t3-p4", "p2"])
def test_login_upgrades_a_hash_made_with_other_parameters(http, db, old):
    if params_of(PasswordHasher(old).hash("x")) == current():
        pytest.skip("the server runs with these very parameters")
    old_hash = PasswordHasher(old).hash(PASSWORD)
    user_id, username = insert_user(db, old_hash)

    # A wrong password does not touch the stored hash.
    with unchanged(db):
        assert_error(http.post("/api/auth/login", json={"username": username, "password": PASSWORD + "x"}), 401,
                     "Invalid Credentials")
    assert stored_hash(db, user_id) == old_hash

    r = http.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"token"}
    upgraded = stored_hash(db, user_id)
    assert upgraded != old_hash
    assert params_of(upgraded) == current()
    assert "$argon2" not in r.text and PASSWORD not in r.text

    # The new hash opens the account, and a login at current parameters does not re-hash again.
    r = http.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert stored_hash(db, user_id) == upgraded
    assert_error(http.post("/api/auth/login", json={"username": username, "password": "not-" + PASSWORD}), 401)
    assert stored_hash(db, user_id) == upgraded


def test_registration_hashes_with_the_configured_parameters(http, db):
    username = unique("fresh")
    r = http.post("/api/auth/register", json={"username": username, "password": PASSWORD})
    assert r.status_code == 201, r.text
    first = stored_hash(db, r.json()["id"])
    assert params_of(first) == current()
    assert http.post("/api/auth/login", json={"username": username, "password": PASSWORD}).status_code == 201
    assert stored_hash(db, r.json()["id"]) == first


@pytest.mark.parametrize("stored", ["not-a-hash", "$argon2id$v=19$m=19456,t=2,p=1$" + "A" * 200],
                         ids=["minted-placeholder", "damaged"])
def test_an_account_whose_stored_value_is_no_hash_refuses_every_password_with_401(http, db, stored):
    """Accounts minted for rush tests (ticketing.accounts) store a placeholder, and a hash may be damaged:
    a login is refused like a wrong password (it used to answer 500), and the stored value stays."""
    user_id, username = insert_user(db, stored)
    with unchanged(db):
        assert_error(http.post("/api/auth/login", json={"username": username, "password": PASSWORD}), 401,
                     "Invalid Credentials")
    assert stored_hash(db, user_id) == stored
