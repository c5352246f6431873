"""Small helpers shared by the HTTP tests."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx


def unique(prefix: str = "user") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def register(http: httpx.Client, role: str = "assistant", password: str = "s3cret-pass") -> dict:
    username = unique(role)
    r = http.post("/api/auth/register", json={"username": username, "password": password, "role": role})
    assert r.status_code == 201, r.text
    token = http.post("/api/auth/login", json={"username": username, "password": password}).json()["token"]
    return {**r.json(), "password": password, "token": token, "headers": {"Authorization": f"Bearer {token}"}}


def future(days: int = 30) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


def create_event(http: httpx.Client, organizer: dict, seats: int = 10, price: str = "50.00", **extra) -> dict:
    body = {
        "eventName": unique("Concert"),
        "eventCategory": "music",
        "eventDate": future(),
        "location": "Arena",
        "ticketCategories": [{"categoryName": "General", "price": price, "totalSeats": seats}],
        **extra,
    }
    r = http.post("/api/events", json=body, headers=organizer["headers"])
    assert r.status_code == 201, r.text
    return r.json()


ERROR_KEYS = {"statusCode", "message", "error"}


def assert_error(r: httpx.Response, status: int, message: str | None = None) -> dict:
    """An error answer: the status, the {statusCode, message, error} body, and the exact message if given."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == ERROR_KEYS and body["statusCode"] == status, body
    if message is not None:
        assert body["message"] == message
    return body


def assert_error_containing(r: httpx.Response, status: int, text: str | None = None) -> dict:
    """Like assert_error, but the message (or one of a list of messages) only has to contain `text`."""
    body = assert_error(r, status)
    if text is not None:
        assert text in str(body["message"]), body
    return body
