"""Demo data through the HTTP API: one organizer, a few buyers, a few events. Safe to run twice."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx

from ticketing.accounts import register_and_login

DEMO_PASSWORD = "demo-password"
DEMO_EVENTS = [
    ("Summer Festival", "music", "Riverside Park", [("General", "45.00", 500), ("VIP", "150.00", 50)]),
    ("Cup Final", "sports", "National Stadium", [("Stand", "80.00", 1000), ("Pitchside", "220.00", 40)]),
    ("Comedy Night", "theatre", "Old Town Hall", [("Seated", "25.00", 120)]),
]


def _login(client: httpx.Client, username: str, role: str) -> dict:
    account = register_and_login(client, DEMO_PASSWORD, role, username, existing_ok=True)  # 409: an earlier run
    me = client.get("/api/user", headers=account["headers"]).json()
    return {"id": me["id"], "username": username, "role": role, "headers": account["headers"]}


def create_demo_data(url: str, *, prefix: str = "demo", users: int = 5) -> dict:
    """Create (or find) the demo accounts and events; returns what exists afterwards."""
    with httpx.Client(base_url=url.rstrip("/"), timeout=60) as client:
        organizer = _login(client, f"{prefix}_organizer", "organizer")
        buyers = [_login(client, f"{prefix}_user{i}", "assistant") for i in range(1, users + 1)]
        mine = {e["eventName"]: e for e in client.get("/api/events").json() if e["createdBy"] == organizer["id"]}
        events = []
        for offset, (name, kind, place, categories) in enumerate(DEMO_EVENTS):
            title = f"{name} ({prefix})"
            if title not in mine:
                body = {
                    "eventName": title, "eventCategory": kind, "location": place,
                    "eventDate": (datetime.now(timezone.utc) + timedelta(days=30 + 7 * offset)).isoformat(),
                    "ticketCategories": [{"categoryName": c, "price": p, "totalSeats": n} for c, p, n in categories],
                }
                r = client.post("/api/events", json=body, headers=organizer["headers"])
                if r.status_code != 201:
                    raise RuntimeError(f"create event: {r.status_code} {r.text}")
                mine[title] = r.json()
            events.append(mine[title])
    return {
        "password": DEMO_PASSWORD,
        "organizer": organizer["username"],
        "users": [b["username"] for b in buyers],
        "events": [{"id": e["idEvent"], "name": e["eventName"],
                    "categories": {c["categoryName"]: c["id"] for c in e["ticketCategories"]}} for e in events],
    }
