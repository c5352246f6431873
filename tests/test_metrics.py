"""Lock state is visible outside the API: category metrics on Ray's Prometheus endpoint, and /api/stats."""
from __future__ import annotations

import re
import time

import httpx

from tests.helpers import create_event, many_buyers, register

LINE = re.compile(r'^(?P<name>[a-zA-Z_:][\w:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str, **labels: str) -> list[float]:
    """Values of metric `name` whose labels include `labels` (label order does not matter)."""
    found = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m and m["name"] == name and labels.items() <= dict(LABEL.findall(m["labels"])).items():
            found.append(float(m["value"]))
    return found


def scrape_until(url: str, ready, timeout: float = 120) -> str:
    """Ray exports metrics every few seconds: poll until `ready(text)` (or give up, returning the last)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(url, timeout=10).text
        except httpx.HTTPError:
            text = ""
        if ready(text):
            return text
        time.sleep(2)
    return text


def test_category_figures_reach_prometheus_and_stats(ray_cluster, http):
    org, buyer = register(http, "organizer"), register(http)
    event = create_event(http, org, seats=7)
    event_id, category_id = event["idEvent"], event["ticketCategories"][0]["id"]
    r = http.post("/api/holds", json={"eventId": event_id, "categoryId": category_id, "quantity": 3},
                  headers=buyer["headers"])
    assert r.status_code == 201, r.text
    refused = http.post("/api/holds", json={"eventId": event_id, "categoryId": category_id, "quantity": 9},
                        headers=register(http)["headers"])
    assert refused.status_code == 400

    # GET /api/stats: the same figures, per category.
    stats = http.get("/api/stats").json()
    mine = next(c for c in stats["categories"] if c["categoryId"] == category_id)
    assert (mine["heldSeats"], mine["soldSeats"], mine["availableSeats"]) == (3, 0, 4)
    assert stats["ticketLocks"]["activeLocks"] >= 1

    # Prometheus text on this node's metrics export port (every node has one; Prometheus scrapes them).
    port = ray_cluster._private.worker.global_worker.node.metrics_export_port
    url = f"http://127.0.0.1:{port}/metrics"
    tags = {"event_id": str(event_id), "category_id": str(category_id)}
    text = scrape_until(url, lambda t: samples(t, "ray_ticketing_available_seats", **tags) == [4.0]
                        and sum(samples(t, "ray_ticketing_request_seconds_count", **tags)) >= 2)
    assert samples(text, "ray_ticketing_available_seats", **tags) == [4.0], f"not exported at {url}"
    assert samples(text, "ray_ticketing_held_seats", **tags) == [3.0]
    assert samples(text, "ray_ticketing_sold_seats", **tags) == [0.0]
    assert samples(text, "ray_ticketing_requests_granted_total", kind="hold", **tags) == [1.0]
    assert samples(text, "ray_ticketing_requests_refused_total", kind="hold", **tags) == [1.0]
    assert samples(text, "ray_ticketing_batch_seconds_count", **tags)[0] >= 1
    assert samples(text, "ray_ticketing_request_seconds_count", **tags)[0] >= 2  # two calls: granted + refused


def test_realtime_sockets_and_fan_out_passes_reach_prometheus(ray_cluster, realtime, http):
    from websockets.sync.client import connect

    org, watcher = register(http, "organizer"), register(http)
    event = create_event(http, org, seats=5)
    event_id, category_id = event["idEvent"], event["ticketCategories"][0]["id"]
    port = ray_cluster._private.worker.global_worker.node.metrics_export_port
    url = f"http://127.0.0.1:{port}/metrics"
    before = sum(samples(scrape_until(url, lambda t: True), "ray_ticketing_fanout_pass_seconds_count"))
    with connect(f"{realtime}?token={watcher['token']}", proxy=None, open_timeout=30) as ws:
        ws.send('{"event": "join-event-room", "data": {"eventId": %d}}' % event_id)
        r = http.post("/api/holds", json={"eventId": event_id, "categoryId": category_id, "quantity": 2},
                      headers=register(http)["headers"])
        assert r.status_code == 201, r.text
        while '"lockedTickets":2' not in ws.recv(timeout=30):  # the pass that carried the hold reached us
            pass
        text = scrape_until(url, lambda t: sum(samples(t, "ray_ticketing_fanout_pass_seconds_count")) > before
                            and sum(samples(t, "ray_ticketing_ws_connections")) >= 1)
    assert sum(samples(text, "ray_ticketing_fanout_pass_seconds_count")) > before, f"not exported at {url}"
    assert sum(samples(text, "ray_ticketing_ws_connections")) >= 1


def test_queue_figures_reach_prometheus(ray_cluster, http, db, jwt_secret, fast_users):
    from tests.test_waiting_room import join, queued_event

    q = queued_event(http, admissionPerMinute=600, maxShoppers=3)
    for buyer in many_buyers(db, jwt_secret, 5):
        join(http, buyer, q["id"])
    port = ray_cluster._private.worker.global_worker.node.metrics_export_port
    url = f"http://127.0.0.1:{port}/metrics"
    tags = {"event_id": str(q["id"])}
    # the cap lets 3 in and 2 wait: the figures as GET .../queue/figures shows them
    text = scrape_until(url, lambda t: samples(t, "ray_ticketing_queue_admitted", **tags) == [3.0]
                        and samples(t, "ray_ticketing_queue_length", **tags) == [2.0])
    figures = http.get(f"/api/events/{q['id']}/queue/figures").json()
    assert (figures["admitted"], figures["queueLength"], figures["shopping"]) == (3, 2, 3)
    assert samples(text, "ray_ticketing_queue_admitted", **tags) == [3.0], f"not exported at {url}"
    assert samples(text, "ray_ticketing_queue_length", **tags) == [2.0]
    assert samples(text, "ray_ticketing_queue_shopping", **tags) == [3.0]
    assert samples(text, "ray_ticketing_queue_admitted_last_minute", **tags) == [3.0]
    assert samples(text, "ray_ticketing_queue_admissions_total", **tags) == [3.0]
