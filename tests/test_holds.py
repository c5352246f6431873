"""Holds through HTTP: /api/holds and the seed's /api/events/tickets/reserve and /release."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import httpx
import pytest
import ray

from domain.vocabulary import MAX_ID
from tests.helpers import (
    actor_figures,
    assert_consistent,
    assert_error_containing,
    category_actor,
    db_counters,
    hold_status,
    new_category,
    person,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("fast_users")  # person() mints users straight into the database


@pytest.fixture()
def cat(http):
    return new_category(http, seats=10)


@pytest.fixture(scope="module")
def refusals_only_cat(server, fast_users):
    """One category for the bad-quantity tests: each checks that its refusal held and sold nothing, so
    they share it (a category costs its actor's start, about 1.5 s on a 2-core machine)."""
    with httpx.Client(base_url=server, timeout=60) as client:
        return new_category(client, seats=10)


@pytest.fixture()
def buyer(http):
    return person()


def hold(http, cat, user, quantity=2, **extra):
    return http.post("/api/holds", json={**cat["body"], "quantity": quantity, **extra}, headers=user["headers"])


# ---- POST /api/holds ---------------------------------------------------------------------------------


def test_hold_is_granted_and_recorded(http, db, cat, buyer):
    r = hold(http, cat, buyer, 3)
    assert r.status_code == 201, r.text
    body = r.json()
    uuid.UUID(body["lockId"])
    assert body["quantity"] == 3 and body["status"] == "active" and body["availableTickets"] == 7
    assert body["eventId"] == cat["event"] and body["categoryId"] == cat["category"]
    assert body["userId"] == buyer["id"]
    expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert expires > datetime.now(timezone.utc)
    assert hold_status(db, body["lockId"]) == "active"
    assert db_counters(db, cat["category"]) == {"total": 10, "held": 3, "sold": 0}
    assert_consistent(db, http, cat["event"], cat["category"])


def test_hold_needs_a_login(http, db, cat):
    r = http.post("/api/holds", json={**cat["body"], "quantity": 1})
    assert_error_containing(r, 401)
    r = http.post("/api/holds", json={**cat["body"], "quantity": 1}, headers={"Authorization": "Bearer nope"})
    assert_error_containing(r, 401)
    assert db_counters(db, cat["category"])["held"] == 0


@pytest.mark.parametrize("quantity", [0, -1, -5, 11, 1001, "2", 2.5, None, True])
def test_bad_quantity_is_refused_and_changes_nothing(http, db, refusals_only_cat, buyer, quantity):
    cat = refusals_only_cat
    r = hold(http, cat, buyer, quantity)
    assert_error_containing(r, 400)
    assert db_counters(db, cat["category"])["held"] == 0


@pytest.mark.parametrize("body", [{}, {"quantity": 1}, {"eventId": "x", "categoryId": 1, "quantity": 1},
                                  {"eventId": 2**40, "categoryId": 1, "quantity": 1}])
def test_malformed_body_is_refused(http, buyer, body):
    assert_error_containing(http.post("/api/holds", json=body, headers=buyer["headers"]), 400)


def test_unknown_or_mismatched_category_is_404(http, db, cat, buyer):
    other = new_category(http, seats=5)
    assert_error_containing(http.post("/api/holds", json={"eventId": cat["event"], "categoryId": other["category"],
                                                           "quantity": 1}, headers=buyer["headers"]), 404)
    assert_error_containing(http.post("/api/holds", json={"eventId": cat["event"], "categoryId": MAX_ID, "quantity": 1},
                                      headers=buyer["headers"]), 404)
    assert_error_containing(http.post("/api/holds", json={"eventId": MAX_ID, "categoryId": cat["category"],
                                                           "quantity": 1}, headers=buyer["headers"]), 404)
    assert db_counters(db, other["category"])["held"] == 0 and db_counters(db, cat["category"])["held"] == 0


def test_not_enough_seats_is_refused(http, db, cat):
    a, b = person(), person()
    assert hold(http, cat, a, 8).status_code == 201
    assert_error_containing(hold(http, cat, b, 3), 400, "Only 2 tickets available")
    assert hold(http, cat, b, 2).status_code == 201
    assert db_counters(db, cat["category"]) == {"total": 10, "held": 10, "sold": 0}


def test_one_active_hold_per_user_and_category(http, db, cat, buyer):
    assert hold(http, cat, buyer, 1).status_code == 201
    assert_error_containing(hold(http, cat, buyer, 1), 409, "already have tickets locked")
    assert db_counters(db, cat["category"])["held"] == 1
    other = new_category(http)
    assert hold(http, other, buyer, 1).status_code == 201  # another category is fine


# ---- GET /api/holds --------------------------------------------------------------------------------


def test_list_my_holds_shows_only_mine(http, cat, buyer):
    stranger = person()
    mine = hold(http, cat, buyer, 2).json()
    hold(http, cat, stranger, 1)
    r = http.get("/api/holds", headers=buyer["headers"])
    assert r.status_code == 200
    assert [h["lockId"] for h in r.json()] == [mine["lockId"]]
    assert r.json()[0]["quantity"] == 2 and r.json()[0]["status"] == "active"
    assert_error_containing(http.get("/api/holds"), 401)


def test_released_hold_leaves_my_list(http, cat, buyer):
    mine = hold(http, cat, buyer, 2).json()
    assert http.delete(f"/api/holds/{mine['lockId']}", headers=buyer["headers"]).status_code == 200
    assert http.get("/api/holds", headers=buyer["headers"]).json() == []


# ---- DELETE /api/holds/{id} ------------------------------------------------------------------------


def test_release_by_owner_frees_the_seats(http, db, cat, buyer):
    mine = hold(http, cat, buyer, 4).json()
    r = http.delete(f"/api/holds/{mine['lockId']}", headers=buyer["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True and r.json()["availableTickets"] == 10
    assert hold_status(db, mine["lockId"]) == "released"
    assert_consistent(db, http, cat["event"], cat["category"])
    # a second release finds nothing
    assert_error_containing(http.delete(f"/api/holds/{mine['lockId']}", headers=buyer["headers"]), 404)


def test_release_by_a_stranger_is_refused(http, db, cat, buyer):
    mine = hold(http, cat, buyer, 4).json()
    stranger = person()
    assert_error_containing(http.delete(f"/api/holds/{mine['lockId']}", headers=stranger["headers"]), 404)
    assert_error_containing(http.delete(f"/api/holds/{mine['lockId']}"), 401)
    assert hold_status(db, mine["lockId"]) == "active"
    assert db_counters(db, cat["category"])["held"] == 4


@pytest.mark.parametrize("lock_id", ["not-a-uuid", str(uuid.uuid4()), "1"])
def test_release_of_unknown_hold_is_404(http, buyer, lock_id):
    assert_error_containing(http.delete(f"/api/holds/{lock_id}", headers=buyer["headers"]), 404)


# ---- seed routes: /api/events/tickets/reserve and /release --------------------------------------------


def test_reserve_makes_a_hold_of_the_caller(http, db, cat, buyer):
    assert_error_containing(http.post("/api/events/tickets/reserve", json={**cat["body"], "quantity": 2}), 401)
    r = http.post("/api/events/tickets/reserve", json={**cat["body"], "quantity": 2}, headers=buyer["headers"])
    assert r.status_code == 201, r.text
    assert r.json()["userId"] == buyer["id"]
    assert hold_status(db, r.json()["lockId"]) == "active"
    assert [h["lockId"] for h in http.get("/api/holds", headers=buyer["headers"]).json()] == [r.json()["lockId"]]
    assert_error_containing(http.post("/api/events/tickets/reserve", json={**cat["body"], "quantity": 9},
                                      headers=person()["headers"]), 400, "Only 8 tickets available")
    assert_error_containing(http.post("/api/events/tickets/reserve", json={**cat["body"], "quantity": -5},
                                      headers=buyer["headers"]), 400)
    assert db_counters(db, cat["category"])["held"] == 2


def test_seed_release_frees_only_the_callers_own_hold(http, db, cat, buyer):
    stranger = person()
    mine = http.post("/api/events/tickets/reserve", json={**cat["body"], "quantity": 3},
                     headers=buyer["headers"]).json()
    release = {"categoryId": cat["category"], "quantity": 3}
    assert_error_containing(http.post("/api/events/tickets/release", json=release), 401)
    # a stranger (no hold here) frees nothing, whatever quantity they name
    assert_error_containing(http.post("/api/events/tickets/release", json={**release, "quantity": 10},
                                      headers=stranger["headers"]), 404)
    assert hold_status(db, mine["lockId"]) == "active" and db_counters(db, cat["category"])["held"] == 3
    # the stranger's own hold is theirs alone to release
    theirs = hold(http, cat, stranger, 1).json()
    r = http.post("/api/events/tickets/release", json=release, headers=buyer["headers"])
    assert r.status_code == 201, r.text
    assert hold_status(db, mine["lockId"]) == "released" and hold_status(db, theirs["lockId"]) == "active"
    assert db_counters(db, cat["category"])["held"] == 1
    assert_consistent(db, http, cat["event"], cat["category"])


def test_seed_release_checks_the_event_and_category(http, cat, buyer):
    hold(http, cat, buyer, 1)
    assert_error_containing(http.post("/api/events/tickets/release", json={"categoryId": MAX_ID},
                                      headers=buyer["headers"]), 404)
    other = new_category(http)
    assert_error_containing(http.post("/api/events/tickets/release", json={"categoryId": cat["category"],
                                                                            "eventId": other["event"]},
                                      headers=buyer["headers"]), 404)
    assert_error_containing(http.post("/api/events/tickets/release", json={"categoryId": "x"}, headers=buyer["headers"]), 400)


# ---- deleted events and expiry ----------------------------------------------------------------------


def test_deleting_an_event_stops_new_holds_at_once(http, db, cat, buyer):
    existing = hold(http, cat, buyer, 2).json()
    r = http.delete(f"/api/events/{cat['event']}", headers=cat["org"]["headers"])
    assert r.status_code == 200, r.text
    late = person()
    assert_error_containing(hold(http, cat, late, 1), 404)
    assert_error_containing(http.post("/api/orders", json={**cat["body"], "quantity": 1}, headers=late["headers"]), 404)
    # the existing hold cannot be bought any more, but its owner may still let it go
    assert_error_containing(http.post("/api/orders/with-lock", json={**cat["body"], "quantity": 2,
                                                                     "lockId": existing["lockId"]},
                                      headers=buyer["headers"]), 404)
    assert http.delete(f"/api/holds/{existing['lockId']}", headers=buyer["headers"]).status_code == 200
    assert db_counters(db, cat["category"]) == {"total": 10, "held": 0, "sold": 0}


def test_hold_expires_on_its_own(http, db, cat, buyer, ray_cluster):
    first = hold(http, cat, person(), 1).json()
    handle = category_actor(cat["event"], cat["category"])
    ray.get(handle.configure.remote({"hold_seconds": 1, "max_per_order": 10}))
    short = hold(http, cat, buyer, 3).json()
    assert hold_status(db, short["lockId"]) == "active"
    wait_until(lambda: hold_status(db, short["lockId"]) == "expired")
    assert hold_status(db, first["lockId"]) == "active"  # held under the old 5-minute setting
    assert db_counters(db, cat["category"])["held"] == 1
    assert actor_figures(cat["event"], cat["category"])["heldSeats"] == 1
    r = http.post("/api/orders/with-lock", json={**cat["body"], "quantity": 3, "lockId": short["lockId"]},
                  headers=buyer["headers"])
    assert_error_containing(r, 400, "expired or is invalid")
    assert http.get("/api/holds", headers=buyer["headers"]).json() == []
    assert hold(http, cat, buyer, 1).status_code == 201  # the expired hold no longer blocks its user
    assert_consistent(db, http, cat["event"], cat["category"])
