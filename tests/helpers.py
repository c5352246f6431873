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
