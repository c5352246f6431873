"""Password hashing parameters: from the environment (ticketing.settings) to the hasher (domain/auth.py),
and which stored hashes are upgraded at login. No Ray, no database."""
from __future__ import annotations

import pytest
from passlib.hash import argon2

from domain.auth import Argon2Params, PasswordHasher, default_hasher, hash_password
from ticketing import settings

# Small costs keep these tests quick; the parameters are what is checked, not the cost.
SMALL = Argon2Params(memory_kib=1024, time_cost=1, parallelism=1)
ENV = ("TICKETING_ARGON2_MEMORY_KIB", "TICKETING_ARGON2_TIME_COST", "TICKETING_ARGON2_PARALLELISM",
       "TICKETING_HASH_THREADS")


def params_of(password_hash: str) -> tuple:
    parsed = argon2.from_string(password_hash)
    return parsed.type, parsed.memory_cost, parsed.rounds, parsed.parallelism


@pytest.fixture()
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_default_settings_are_owasp_minimum_argon2id(clean_env):
    hashing = settings.password_hashing()
    assert (hashing.memory_kib, hashing.time_cost, hashing.parallelism) == (19456, 2, 1)
    assert hashing.thread_count() >= 1
    assert Argon2Params() == Argon2Params(19456, 2, 1)


def test_settings_come_from_the_environment(clean_env):
    clean_env.setenv("TICKETING_ARGON2_MEMORY_KIB", "2048")
    clean_env.setenv("TICKETING_ARGON2_TIME_COST", "3")
    clean_env.setenv("TICKETING_ARGON2_PARALLELISM", "2")
    clean_env.setenv("TICKETING_HASH_THREADS", "5")
    hashing = settings.password_hashing()
    assert (hashing.memory_kib, hashing.time_cost, hashing.parallelism) == (2048, 3, 2)
    assert hashing.thread_count() == 5


def test_hasher_uses_the_parameters_passed_in():
    hasher = PasswordHasher(Argon2Params(memory_kib=2048, time_cost=3, parallelism=2))
    hashed = hasher.hash("correct horse")
    assert hashed.startswith("$argon2id$v=19$m=2048,t=3,p=2$")
    assert params_of(hashed) == ("id", 2048, 3, 2)
    assert hasher.verify("correct horse", hashed) and not hasher.verify("wrong horse", hashed)


def test_default_hasher_and_module_functions_use_the_defaults():
    assert params_of(hash_password("pw-12345678")) == ("id", 19456, 2, 1)
    assert default_hasher().params == Argon2Params()


def test_dummy_hash_for_unknown_users_has_the_same_parameters():
    for params in (SMALL, Argon2Params(2048, 2, 2)):
        hasher = PasswordHasher(params)
        assert params_of(hasher._dummy_hash) == params_of(hasher.hash("x"))
        assert not hasher.needs_update(hasher._dummy_hash)


@pytest.mark.parametrize("bad", [{"time_cost": 0}, {"parallelism": 0}, {"memory_kib": 8, "parallelism": 2}])
def test_impossible_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        Argon2Params(**{"memory_kib": 1024, "time_cost": 1, "parallelism": 1, **bad})


@pytest.mark.parametrize(
    "other",
    [Argon2Params(2048, 1, 1), Argon2Params(1024, 2, 1), Argon2Params(1024, 1, 2)],
    ids=["memory", "time", "parallelism"],
)
def test_a_hash_with_any_other_parameter_needs_update(other):
    hasher = PasswordHasher(SMALL)
    assert hasher.needs_update(PasswordHasher(other).hash("pw-12345678"))
    assert not hasher.needs_update(hasher.hash("pw-12345678"))


def test_a_hash_of_another_argon2_type_needs_update():
    hasher = PasswordHasher(SMALL)
    argon2i = argon2.using(type="I", memory_cost=1024, rounds=1, parallelism=1).hash("pw-12345678")
    assert params_of(argon2i) == ("i", 1024, 1, 1)
    assert hasher.needs_update(argon2i)


def test_verify_and_update_gives_a_new_hash_only_for_a_valid_password_and_old_parameters():
    hasher = PasswordHasher(SMALL)
    old = PasswordHasher(Argon2Params(4096, 3, 4)).hash("pw-12345678")

    valid, new_hash = hasher.verify_and_update("pw-12345678", old)
    assert valid and new_hash is not None
    assert params_of(new_hash) == ("id", 1024, 1, 1)
    assert hasher.verify("pw-12345678", new_hash) and not hasher.needs_update(new_hash)

    assert hasher.verify_and_update("wrong-password", old) == (False, None)
    assert hasher.verify_and_update("pw-12345678", new_hash) == (True, None)  # current: no re-hash
    assert hasher.verify_and_update("pw-12345678", None) == (False, None)  # unknown user


def test_verify_or_burn():
    hasher = PasswordHasher(SMALL)
    hashed = hasher.hash("pw-12345678")
    assert hasher.verify_or_burn("pw-12345678", hashed)
    assert not hasher.verify_or_burn("pw-wrong", hashed)
    assert not hasher.verify_or_burn("pw-12345678", None)


def test_hashes_of_either_library_verify_with_the_other():
    """New one-lane hashes come from libsodium; hashes stored by passlib's argon2-cffi must keep working,
    and the other way round (a rollback)."""
    hasher = PasswordHasher(SMALL)
    passlib_hash = argon2.using(type="ID", memory_cost=1024, rounds=1, parallelism=1).hash("pw-12345678")
    assert hasher.verify("pw-12345678", passlib_hash) and not hasher.verify("pw-wrong", passlib_hash)
    assert not hasher.needs_update(passlib_hash)

    ours = hasher.hash("pw-12345678")
    assert argon2.verify("pw-12345678", ours) and not argon2.verify("pw-wrong", ours)
    assert params_of(ours) == ("id", 1024, 1, 1)


def test_a_damaged_stored_hash_is_a_wrong_password_not_a_crash():
    hasher = PasswordHasher(SMALL)
    damaged = hasher.hash("pw-12345678")[:-10]
    assert not hasher.verify("pw-12345678", damaged)
    assert not hasher.verify("pw-12345678", "$argon2id$")


def test_hashes_libsodium_cannot_read_are_checked_by_passlib():
    """argon2id hashes of version 1.0 (v=16), or longer than libsodium takes (a 32-byte salt and a 64-byte
    digest: 158 characters), are still valid passwords' hashes."""
    from argon2.low_level import Type, hash_secret

    hasher = PasswordHasher(SMALL)
    v16 = hash_secret(b"pw-12345678", b"sixteen-byte-slt", time_cost=1, memory_cost=1024, parallelism=1,
                      hash_len=32, type=Type.ID, version=16).decode()
    assert v16.startswith("$argon2id$v=16$")
    long_hash = argon2.using(type="ID", salt_size=32, digest_size=64, memory_cost=1024, rounds=1,
                             parallelism=1).hash("pw-12345678")
    assert len(long_hash) > 127
    for stored in (v16, long_hash):
        assert hasher.verify("pw-12345678", stored) and not hasher.verify("pw-wrong", stored), stored


@pytest.mark.parametrize("stored", ["not-a-hash", "$argon2id$v=19$m=1024,t=1,p=1$" + "A" * 200,
                                    "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$é"])
def test_a_stored_value_that_is_no_readable_hash_is_a_wrong_password(stored):
    hasher = PasswordHasher(SMALL)
    assert hasher.verify("pw-12345678", stored) is False
    assert hasher.verify_and_update("pw-12345678", stored) == (False, None)


def test_a_stored_value_that_is_no_readable_hash_costs_a_verify_like_an_unknown_user():
    """Refused at once, such an account (a minted rush-test buyer) would be told apart from a real one by
    how fast a wrong password is answered: it costs one verify of the dummy hash, as an unknown user does."""
    class Counting(PasswordHasher):
        def __init__(self, params: Argon2Params) -> None:
            self.checked: list[str] = []
            super().__init__(params)

        def _verify(self, password: str, password_hash: str) -> bool:
            self.checked.append(password_hash)
            return super()._verify(password, password_hash)

    hasher = Counting(SMALL)
    assert hasher.verify("pw-12345678", "not-a-hash") is False
    assert hasher.checked == ["not-a-hash", hasher._dummy_hash]
    hasher.checked.clear()
    assert hasher.verify_or_burn("pw-12345678", None) is False
    assert hasher.checked == [hasher._dummy_hash]
