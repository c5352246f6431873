"""Passwords, tokens and the Authorization header: pure rules of domain/auth.py, no Ray, no database."""
from __future__ import annotations

import base64
import hmac
import json
import pickle
import time

import jwt
import pytest

from domain.auth import (
    Principal,
    hash_password,
    issue_token,
    token_from_header,
    verify_or_burn,
    verify_password,
    verify_token,
)
from domain.errors import ApiError, Unauthorized, error_body

SECRET = "unit-test-secret-" + "x" * 32


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(**overrides) -> dict:
    now = int(time.time())
    return {"sub": "7", "username": "ana", "role": "assistant", "iat": now, "exp": now + 600, **overrides}


def test_password_is_hashed_with_argon2_and_verifies():
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2")
    assert "correct horse" not in hashed
    assert verify_password("correct horse", hashed)
    assert not verify_password("wrong horse", hashed)


def test_same_password_hashes_differently_each_time():
    assert hash_password("same-password") != hash_password("same-password")


def test_verify_or_burn_rejects_unknown_user_and_wrong_password():
    hashed = hash_password("pw-12345678")
    assert verify_or_burn("pw-12345678", hashed)
    assert not verify_or_burn("pw-wrong", hashed)
    assert not verify_or_burn("pw-12345678", None)


def test_issued_token_round_trips_to_principal():
    token = issue_token(42, "bob", "organizer", SECRET, 3600)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert decoded["sub"] == "42" and decoded["exp"] - decoded["iat"] == 3600
    principal = verify_token(token, SECRET)
    assert principal == Principal(42, "bob", "organizer")
    assert principal.expires_at == decoded["exp"]  # an open WebSocket is closed then
    assert principal.is_organizer


def test_assistant_is_not_organizer():
    assert not Principal(1, "a", "assistant").is_organizer


def assert_invalid(token: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        verify_token(token, SECRET)
    assert caught.value.body() == {"statusCode": 401, "message": "Invalid Token!", "error": "Unauthorized"}


def test_forged_signature_is_rejected():
    assert_invalid(jwt.encode(claims(), "another-secret-" + "y" * 32, algorithm="HS256"))


def test_expired_token_is_rejected():
    now = int(time.time())
    assert_invalid(jwt.encode(claims(iat=now - 7200, exp=now - 3600), SECRET, algorithm="HS256"))


def test_alg_none_token_is_rejected():
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    assert_invalid(unsigned)


def test_alg_none_header_with_a_valid_signature_is_rejected():
    good = issue_token(7, "ana", "assistant", SECRET, 600)
    _, payload, signature = good.split(".")
    assert_invalid(f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}")


def test_other_hmac_algorithm_is_rejected_even_with_the_right_secret():
    assert_invalid(jwt.encode(claims(), SECRET, algorithm="HS512"))


def test_a_public_key_as_secret_is_refused_on_every_check_not_only_the_first():
    # The decoder vets each secret once and remembers it; a refused key must not be remembered as good.
    pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims())}"
    signature = base64.urlsafe_b64encode(hmac.new(pem.encode(), signing_input.encode(), "sha256").digest())
    signed_with_the_pem = f"{signing_input}.{signature.decode().rstrip('=')}"
    for _ in range(2):
        with pytest.raises(Unauthorized):
            verify_token(signed_with_the_pem, pem)
    assert verify_token(issue_token(7, "ana", "assistant", SECRET, 600), SECRET).user_id == 7


@pytest.mark.parametrize(
    "bad",
    [
        {"exp": None},  # no expiry
        {"sub": None},  # no subject
        {"role": None},  # no role
        {"role": "admin"},  # no such role
        {"sub": "abc"},  # subject is not a user id
        {"sub": "0"},
        {"sub": "2147483648"},  # beyond PostgreSQL integer ids
    ],
    ids=["no-exp", "no-sub", "no-role", "unknown-role", "non-numeric-sub", "zero-sub", "huge-sub"],
)
def test_tokens_missing_or_bad_claims_are_rejected(bad):
    body = {k: v for k, v in claims(**bad).items() if v is not None}
    assert_invalid(jwt.encode(body, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("garbage", ["", "garbage", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9"])
def test_garbage_tokens_are_rejected(garbage):
    assert_invalid(garbage)


@pytest.mark.parametrize("header", [None, ""])
def test_missing_authorization_header(header):
    with pytest.raises(Unauthorized) as caught:
        token_from_header(header)
    assert caught.value.message == "missing token!"


@pytest.mark.parametrize("header,token", [("Bearer abc", "abc"), ("bearer abc", "abc"), ("Bearer  abc ", "abc")])
def test_bearer_scheme_yields_the_token(header, token):
    assert token_from_header(header) == token


@pytest.mark.parametrize("header", ["Token abc", "Basic abc", "abc", "Bearer", "Bearer   "])
def test_other_schemes_or_empty_token_are_rejected(header):
    with pytest.raises(Unauthorized) as caught:
        token_from_header(header)
    assert caught.value.message == "Invalid Token!"


def test_error_body_shape_and_pickling_keep_status_and_message():
    err = Unauthorized("Invalid Credentials")
    assert err.body() == {"statusCode": 401, "message": "Invalid Credentials", "error": "Unauthorized"}
    copy = pickle.loads(pickle.dumps(err))  # as Ray ships it from a service back to the gateway
    assert type(copy) is Unauthorized and copy.status == 401 and copy.message == "Invalid Credentials"
    assert ApiError("Slow down", 429).body()["error"] == "Too Many Requests"
    assert error_body(400, ["a: bad"]) == {"statusCode": 400, "message": ["a: bad"], "error": "Bad Request"}


def test_verified_tokens_check_the_signature_once_and_the_expiry_every_time():
    import time as _time

    from domain.auth import Principal, VerifiedTokens, issue_token
    from domain.errors import Unauthorized

    tokens = VerifiedTokens("s" * 48, max_entries=2)
    good = issue_token(7, "ann", "assistant", "s" * 48, 3600)
    assert tokens.verify(good).user_id == 7
    assert tokens.verify(good) is tokens.verify(good)  # answered from the cache
    with pytest.raises(Unauthorized):
        tokens.verify(issue_token(7, "ann", "assistant", "another-secret-" * 4, 3600))  # forged: never cached
    tokens._known[good] = Principal(7, "ann", "assistant", _time.time() - 1)  # the cached token has expired
    with pytest.raises(Unauthorized):
        tokens.verify(good)
    for user in (1, 2, 3):  # bounded: full means emptied, not grown
        tokens.verify(issue_token(user, "u", "assistant", "s" * 48, 3600))
    assert len(tokens._known) <= 2
