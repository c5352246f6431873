"""GET /api/user: the caller's profile, and what happens when the token outlives the user."""
from __future__ import annotations

import time

import jwt
import pytest

from domain.vocabulary import MAX_ID
from tests.helpers import execute, future, register, scalar, unchanged


def test_profile_returns_id_username_role(http):
    user = register(http)
    r = http.get("/api/user", headers=user["headers"])
    assert r.status_code == 200, r.text
    assert r.json() == {"id": user["id"], "username": user["username"], "role": "assistant"}
    assert user["password"] not in r.text and "$argon2" not in r.text


def test_profile_of_an_organizer(http):
    user = register(http, "organizer")
    assert http.get("/api/user", headers=user["headers"]).json()["role"] == "organizer"


def test_profile_is_the_callers_own(http):
    a, b = register(http), register(http)
    assert http.get("/api/user", headers=a["headers"]).json()["id"] == a["id"]
    assert http.get("/api/user", headers=b["headers"]).json()["id"] == b["id"]


def test_profile_without_token_is_401(http):
    r = http.get("/api/user")
    assert r.status_code == 401
    assert r.json() == {"statusCode": 401, "message": "missing token!", "error": "Unauthorized"}


def test_profile_of_a_deleted_user_is_404(http, db):
    user = register(http)
    execute(db, "DELETE FROM users WHERE id = :id", id=user["id"])
    assert scalar(db, "SELECT count(*) FROM users WHERE id = :id", id=user["id"]) == 0
    r = http.get("/api/user", headers=user["headers"])  # the token is still valid
    assert r.status_code == 404
    assert r.json() == {"statusCode": 404, "message": "User not found", "error": "Not Found"}


def token_for(secret: str, sub: str) -> dict:
    now = int(time.time())
    token = jwt.encode({"sub": sub, "username": "nobody", "role": "assistant", "iat": now, "exp": now + 600},
                       secret, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def test_profile_of_a_user_that_never_existed_is_404(http, jwt_secret):
    r = http.get("/api/user", headers=token_for(jwt_secret, str(MAX_ID)))
    assert r.status_code == 404, r.text
    assert r.json()["message"] == "User not found"


@pytest.mark.parametrize("sub", ["0", "-1", "2147483648", "999999999999"])
def test_token_whose_subject_cannot_be_a_user_id_is_401(http, jwt_secret, sub):
    """Even correctly signed: such a subject used to reach PostgreSQL out of range and answer 500."""
    r = http.get("/api/user", headers=token_for(jwt_secret, sub))
    assert r.status_code == 401, r.text
    assert r.json() == {"statusCode": 401, "message": "Invalid Token!", "error": "Unauthorized"}


def test_deleted_organizer_cannot_create_an_event(http, db):
    """The token outlives the user: creating an event used to hit the foreign key and answer 500."""
    organizer = register(http, "organizer")
    execute(db, "DELETE FROM users WHERE id = :id", id=organizer["id"])
    body = {"eventName": "Ghost show", "eventCategory": "music", "eventDate": future(),
            "ticketCategories": [{"categoryName": "G", "price": "10.00", "totalSeats": 3}]}
    with unchanged(db):
        r = http.post("/api/events", json=body, headers=organizer["headers"])
    assert r.status_code == 404, r.text
    assert r.json() == {"statusCode": 404, "message": "User not found", "error": "Not Found"}
