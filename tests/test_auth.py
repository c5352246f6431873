"""POST /api/auth/register, POST /api/auth/login and the JWT guard, through the Serve proxy."""
from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from tests.helpers import assert_error, register, row, scalar, unchanged, unique

PASSWORD = "s3cret-Pass-42"


# ---- register ----------------------------------------------------------------------------------------


def test_register_returns_id_username_role_and_never_the_password(http, db):
    username = unique("ana")
    r = http.post("/api/auth/register", json={"username": username, "password": PASSWORD})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "username", "role"}
    assert body["username"] == username and body["role"] == "assistant" and isinstance(body["id"], int)
    stored = row(db, "SELECT username, password_hash, role::text AS role FROM users WHERE id = :id", id=body["id"])
    assert stored["username"] == username and stored["role"] == "assistant"
    assert stored["password_hash"].startswith("$argon2") and PASSWORD not in stored["password_hash"]
    # Neither the password nor its hash (nor any hash-looking text) is anywhere in the answer.
    assert PASSWORD not in r.text and stored["password_hash"] not in r.text and "$argon2" not in r.text


def test_register_as_organizer(http):
    r = http.post("/api/auth/register", json={"username": unique("olga"), "password": PASSWORD, "role": "organizer"})
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "organizer"


def test_register_duplicate_username_is_409(http, db):
    username = unique("dup")
    assert http.post("/api/auth/register", json={"username": username, "password": PASSWORD}).status_code == 201
    with unchanged(db):
        r = http.post("/api/auth/register", json={"username": username, "password": "another-pass-1"})
    assert_error(r, 409, "Username already exists")
    assert r.json()["error"] == "Conflict"
    assert scalar(db, "SELECT count(*) FROM users WHERE username = :u", u=username) == 1


@pytest.mark.parametrize("role", ["customer", "admin", "ORGANIZER", "", None, 1])
def test_register_invalid_role_is_400(http, db, role):
    with unchanged(db):
        r = http.post("/api/auth/register", json={"username": unique(), "password": PASSWORD, "role": role})
    body = assert_error(r, 400)
    assert body["error"] == "Bad Request"


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"password": PASSWORD},  # no username
        {"username": "someone"},  # no password
        {"username": 123, "password": PASSWORD},
        {"username": ["a"], "password": PASSWORD},
        {"username": "someone", "password": 12345678},
        {"username": "", "password": PASSWORD},
        {"username": "   ", "password": PASSWORD},
        {"username": "x" * 101, "password": PASSWORD},
        {"username": "someone", "password": "short"},
        {"username": "someone", "password": "p" * 129},
        {"username": None, "password": PASSWORD},
        [],
        "username",
        None,
    ],
    ids=["empty", "no-username", "no-password", "int-username", "list-username", "int-password",
         "empty-username", "blank-username", "long-username", "short-password", "long-password",
         "null-username", "array-body", "string-body", "null-body"],
)
def test_register_missing_or_wrong_typed_fields_is_400(http, db, payload):
    with unchanged(db):
        r = http.post("/api/auth/register", json=payload)
    assert_error(r, 400)


@pytest.mark.parametrize(
    "payload",
    [
        {"username": unique(), "password": "Leak-" + "q" * 130},  # too long
        {"username": unique(), "password": ["Leak-secret-password"]},  # wrong type
        {"username": unique(), "password": {"Leak-secret-password": 1}},
        {"username": unique(), "password": "Leak-secret-password", "role": "customer"},  # other field bad
        {"username": "", "password": "Leak-secret-password"},
        {"password": "Leak-secret-password"},
    ],
    ids=["too-long", "list", "object", "bad-role", "empty-username", "no-username"],
)
def test_password_never_appears_in_a_validation_error(http, db, payload):
    with unchanged(db):
        r = http.post("/api/auth/register", json=payload)
    assert_error(r, 400)
    assert "Leak" not in r.text and "qqqq" not in r.text


def test_login_validation_error_does_not_echo_the_password(http, db):
    with unchanged(db):
        r = http.post("/api/auth/login", json={"username": ["x"], "password": "Leak-secret-password"})
    assert_error(r, 400)
    assert "Leak" not in r.text


def test_id_in_register_body_cannot_overwrite_another_user(http, db):
    victim = register(http, "organizer")
    before = row(db, "SELECT username, password_hash, role::text AS role FROM users WHERE id = :id", id=victim["id"])
    attacker = unique("mallory")
    r = http.post("/api/auth/register", json={
        "id": victim["id"], "username": attacker, "password": PASSWORD, "role": "assistant"})
    assert r.status_code == 201, r.text
    assert r.json()["id"] != victim["id"] and r.json()["username"] == attacker
    after = row(db, "SELECT username, password_hash, role::text AS role FROM users WHERE id = :id", id=victim["id"])
    assert after == before
    # The victim still logs in with their own password; the attacker's password does not open the account.
    assert http.post("/api/auth/login", json={"username": victim["username"], "password": victim["password"]}).status_code == 201
    assert_error(http.post("/api/auth/login", json={"username": victim["username"], "password": PASSWORD}), 401)


def test_extra_keys_in_register_body_are_ignored(http, db):
    username = unique("extra")
    r = http.post("/api/auth/register", json={
        "username": username, "password": PASSWORD, "email": "a@b.c", "firstName": "A", "lastName": "B",
        "password_hash": "$argon2id$forged", "createdAt": "2000-01-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"id", "username", "role"}
    stored = row(db, "SELECT password_hash, created_at FROM users WHERE id = :id", id=r.json()["id"])
    assert stored["password_hash"] != "$argon2id$forged" and stored["created_at"].year > 2000
    assert http.post("/api/auth/login", json={"username": username, "password": PASSWORD}).status_code == 201


# ---- login -------------------------------------------------------------------------------------------


def test_login_returns_only_a_token_that_carries_the_user(http, jwt_secret):
    user = register(http, "organizer", password=PASSWORD)
    r = http.post("/api/auth/login", json={"username": user["username"], "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"token"}
    token = r.json()["token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == str(user["id"]) and claims["username"] == user["username"]
    assert claims["role"] == "organizer" and claims["exp"] > claims["iat"]


def test_login_takes_the_username_as_registration_stored_it(http):
    """Registration strips the username (a phone keyboard's trailing space); login does the same, or the
    user could not log in with what they typed at registration."""
    name = unique("spaced")
    r = http.post("/api/auth/register", json={"username": f" {name} ", "password": PASSWORD})
    assert r.status_code == 201 and r.json()["username"] == name, r.text
    r = http.post("/api/auth/login", json={"username": f"{name} ", "password": PASSWORD})
    assert r.status_code == 201 and set(r.json()) == {"token"}, r.text


def test_login_wrong_password_is_401(http, db):
    user = register(http, password=PASSWORD)
    with unchanged(db):
        r = http.post("/api/auth/login", json={"username": user["username"], "password": PASSWORD + "x"})
    assert r.json() == {"statusCode": 401, "message": "Invalid Credentials", "error": "Unauthorized"}
    assert r.status_code == 401


def test_login_unknown_user_is_401(http, db):
    with unchanged(db):
        r = http.post("/api/auth/login", json={"username": unique("ghost"), "password": PASSWORD})
    assert r.status_code == 401
    assert r.json() == {"statusCode": 401, "message": "Invalid Credentials", "error": "Unauthorized"}


def test_login_without_username_does_not_match_the_first_user(http, db):
    """The seed looked up `username = undefined`, which matched the first user row."""
    first = scalar(db, "SELECT username FROM users ORDER BY id LIMIT 1")
    assert first is not None
    with unchanged(db):
        r = http.post("/api/auth/login", json={"password": PASSWORD})
    assert_error(r, 400)
    assert "token" not in r.json()


@pytest.mark.parametrize(
    "payload",
    [{}, {"username": "someone"}, {"username": None, "password": "x"}, {"username": "someone", "password": ""},
     {"username": 1, "password": "x"}, {"username": "someone", "password": 123}, [], "x"],
    ids=["empty", "no-password", "null-username", "empty-password", "int-username", "int-password",
         "array", "string"],
)
def test_login_missing_or_wrong_typed_fields_is_400(http, db, payload):
    with unchanged(db):
        r = http.post("/api/auth/login", json=payload)
    assert_error(r, 400)


# ---- the JWT guard -----------------------------------------------------------------------------------


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def member(server):
    import httpx

    with httpx.Client(base_url=server, timeout=60) as client:
        return register(client, "organizer")


def claims_for(user: dict, **overrides) -> dict:
    now = int(time.time())
    return {"sub": str(user["id"]), "username": user["username"], "role": user["role"],
            "iat": now, "exp": now + 600, **overrides}


def test_guard_accepts_a_valid_token(http, member):
    r = http.get("/api/user", headers=member["headers"])
    assert r.status_code == 200 and r.json()["id"] == member["id"]


def test_guard_accepts_a_token_signed_with_the_install_secret(http, member, jwt_secret):
    token = jwt.encode(claims_for(member), jwt_secret, algorithm="HS256")
    assert http.get("/api/user", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_guard_missing_header_is_401(http):
    r = http.get("/api/user")
    assert r.json() == {"statusCode": 401, "message": "missing token!", "error": "Unauthorized"}
    assert r.status_code == 401


def forged(member, secret):
    return jwt.encode(claims_for(member), "not-the-secret-" + "z" * 40, algorithm="HS256")


def expired(member, secret):
    now = int(time.time())
    return jwt.encode(claims_for(member, iat=now - 7200, exp=now - 3600), secret, algorithm="HS256")


def alg_none(member, secret):
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims_for(member))}."


def alg_none_keeping_signature(member, secret):
    good = jwt.encode(claims_for(member), secret, algorithm="HS256")
    _, payload, signature = good.split(".")
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}"


def tampered_role(member, secret):
    good = jwt.encode(claims_for(member, role="assistant"), secret, algorithm="HS256")
    header, _, signature = good.split(".")
    return f"{header}.{b64(claims_for(member, role='organizer'))}.{signature}"


def no_expiry(member, secret):
    body = claims_for(member)
    del body["exp"]
    return jwt.encode(body, secret, algorithm="HS256")


def unknown_role(member, secret):
    return jwt.encode(claims_for(member, role="admin"), secret, algorithm="HS256")


def garbage(member, secret):
    return "garbage.token.value"


BAD_TOKENS = [forged, expired, alg_none, alg_none_keeping_signature, tampered_role, no_expiry, unknown_role, garbage]


@pytest.mark.parametrize("make", BAD_TOKENS, ids=[f.__name__ for f in BAD_TOKENS])
def test_guard_rejects_bad_tokens_with_401(http, member, jwt_secret, make):
    r = http.get("/api/user", headers={"Authorization": f"Bearer {make(member, jwt_secret)}"})
    assert r.status_code == 401, r.text
    assert r.json() == {"statusCode": 401, "message": "Invalid Token!", "error": "Unauthorized"}


@pytest.mark.parametrize("scheme", ["Token", "Basic", "JWT", ""])
def test_guard_rejects_a_valid_token_under_another_scheme(http, member, scheme):
    token = member["token"]
    r = http.get("/api/user", headers={"Authorization": f"{scheme} {token}".strip()})
    assert_error(r, 401)


@pytest.mark.parametrize("header", ["Bearer", "Bearer .", "Bearer a b c", "garbage"])
def test_guard_rejects_garbage_headers(http, header):
    assert_error(http.get("/api/user", headers={"Authorization": header}), 401)


@pytest.mark.parametrize("make", [forged, expired, alg_none], ids=["forged", "expired", "alg-none"])
def test_bad_tokens_change_nothing_on_guarded_writes(http, db, member, jwt_secret, make):
    headers = {"Authorization": f"Bearer {make(member, jwt_secret)}"}
    body = {"eventName": "X", "eventCategory": "c", "eventDate": "2031-01-01T00:00:00Z"}
    with unchanged(db):
        assert_error(http.post("/api/events", json=body, headers=headers), 401)
        assert_error(http.put("/api/events/1", json={"eventName": "Y"}, headers=headers), 401)
        assert_error(http.delete("/api/events/1", headers=headers), 401)
