"""Orders through HTTP: buying with and without a hold, reading, cancelling, idempotency, stats."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from domain.vocabulary import MAX_ID
from tests.helpers import (
    assert_consistent,
    assert_error_containing,
    db_counters,
    hold_status,
    make_past,
    new_category,
    order_rows,
    person,
    unchanged,
)

pytestmark = pytest.mark.usefixtures("fast_users")  # person() mints users straight into the database


@pytest.fixture()
def cat(http):
    return new_category(http, seats=10, price="12.50")


@pytest.fixture(scope="module")
def refusals_only_cat(server, fast_users):
    """One category for the tests of refused orders: each checks that its refusal held and sold nothing, so
    they share it (a category costs its actor's start, about 1.5 s on a 2-core machine)."""
    with httpx.Client(base_url=server, timeout=60) as client:
        return new_category(client, seats=10, price="12.50")


@pytest.fixture()
def buyer(http):
    return person()


def buy(http, cat, user, quantity=2, headers=None, **extra):
    return http.post("/api/orders", json={**cat["body"], "quantity": quantity, **extra},
                     headers={**user["headers"], **(headers or {})})


def hold(http, cat, user, quantity=2):
    r = http.post("/api/holds", json={**cat["body"], "quantity": quantity}, headers=user["headers"])
    assert r.status_code == 201, r.text
    return r.json()


def with_lock(http, cat, user, lock_id, quantity=2, headers=None, **extra):
    return http.post("/api/orders/with-lock", json={**cat["body"], "quantity": quantity, "lockId": lock_id, **extra},
                     headers={**user["headers"], **(headers or {})})


ORDER_KEYS = {"id", "userId", "eventId", "categoryId", "quantity", "unitPrice", "totalPrice", "status",
              "eventName", "categoryName", "notes", "lockId", "createdAt", "updatedAt"}


# ---- POST /api/orders ----------------------------------------------------------------------------------


def test_purchase_creates_a_confirmed_order(http, db, cat, buyer):
    r = buy(http, cat, buyer, 3, notes="aisle please")
    assert r.status_code == 201, r.text
    order = r.json()
    assert set(order) >= ORDER_KEYS
    assert isinstance(order["id"], str) and order["status"] == "confirmed"
    assert (order["quantity"], order["unitPrice"], order["totalPrice"]) == (3, "12.50", "37.50")
    assert order["userId"] == buyer["id"] and order["notes"] == "aisle please" and order["lockId"] is None
    rows = order_rows(db, cat["category"])
    assert [(str(r.id), r.status, r.quantity) for r in rows] == [(order["id"], "confirmed", 3)]
    assert db_counters(db, cat["category"]) == {"total": 10, "held": 0, "sold": 3}
    assert_consistent(db, http, cat["event"], cat["category"])


def test_purchase_needs_a_login(http, db, refusals_only_cat):
    cat = refusals_only_cat
    assert_error_containing(http.post("/api/orders", json={**cat["body"], "quantity": 1}), 401)
    assert order_rows(db, cat["category"]) == []


@pytest.mark.parametrize("quantity", [0, -5, 11, 1001, "2", 1.5, None])
def test_bad_quantity_is_refused_and_changes_nothing(http, db, refusals_only_cat, buyer, quantity):
    cat = refusals_only_cat
    assert_error_containing(buy(http, cat, buyer, quantity), 400)
    assert_error_containing(http.post("/api/orders/with-lock", json={**cat["body"], "quantity": quantity},
                                      headers=buyer["headers"]), 400)
    assert order_rows(db, cat["category"]) == [] and db_counters(db, cat["category"])["sold"] == 0


def test_not_enough_seats(http, db, cat, buyer):
    assert buy(http, cat, buyer, 9).status_code == 201
    assert_error_containing(buy(http, cat, person(), 2), 400, "Only 1 tickets left")
    assert db_counters(db, cat["category"])["sold"] == 9


def test_unknown_event_or_category(http, db, refusals_only_cat, buyer):
    cat = refusals_only_cat
    assert_error_containing(http.post("/api/orders", json={"eventId": MAX_ID, "categoryId": cat["category"], "quantity": 1},
                                      headers=buyer["headers"]), 404, f"Event with ID {MAX_ID} not found")
    assert_error_containing(http.post("/api/orders", json={"eventId": cat["event"], "categoryId": MAX_ID, "quantity": 1},
                                      headers=buyer["headers"]), 404, "Ticket category not found")
    other = new_category(http)
    assert_error_containing(http.post("/api/orders", json={"eventId": cat["event"], "categoryId": other["category"],
                                                            "quantity": 1}, headers=buyer["headers"]), 404)
    assert order_rows(db, other["category"]) == []


def test_lock_id_on_plain_order_route_is_ignored(http, db, cat, buyer):
    mine = hold(http, cat, buyer, 2)
    r = buy(http, cat, buyer, 1, lockId=mine["lockId"])
    assert r.status_code == 201 and r.json()["lockId"] is None
    assert hold_status(db, mine["lockId"]) == "active"
    assert db_counters(db, cat["category"]) == {"total": 10, "held": 2, "sold": 1}


# ---- POST /api/orders/with-lock ----------------------------------------------------------------------------


def test_order_with_lock_consumes_the_hold(http, db, cat, buyer):
    mine = hold(http, cat, buyer, 2)
    r = with_lock(http, cat, buyer, mine["lockId"])
    assert r.status_code == 201, r.text
    assert r.json()["lockId"] == mine["lockId"] and r.json()["totalPrice"] == "25.00"
    assert hold_status(db, mine["lockId"]) == "confirmed"
    assert db_counters(db, cat["category"]) == {"total": 10, "held": 0, "sold": 2}
    assert_error_containing(with_lock(http, cat, buyer, mine["lockId"]), 400, "expired or is invalid")
    assert len(order_rows(db, cat["category"])) == 1
    assert_consistent(db, http, cat["event"], cat["category"])


@pytest.mark.parametrize("lock_id", ["", None])
def test_with_lock_without_a_lock_is_a_plain_order(http, db, cat, buyer, lock_id):
    r = with_lock(http, cat, buyer, lock_id, 1)
    assert r.status_code == 201, r.text
    assert db_counters(db, cat["category"])["sold"] == 1


def test_with_lock_refuses_someone_elses_or_unknown_or_wrong_lock(http, db, cat, buyer):
    mine = hold(http, cat, buyer, 2)
    thief = person()
    assert_error_containing(with_lock(http, cat, thief, mine["lockId"]), 400, "expired or is invalid")
    assert_error_containing(with_lock(http, cat, buyer, str(uuid.uuid4())), 400, "expired or is invalid")
    assert_error_containing(with_lock(http, cat, buyer, "garbage"), 400, "expired or is invalid")
    assert_error_containing(with_lock(http, cat, buyer, mine["lockId"], 3), 400, "does not match")
    other = new_category(http)
    assert_error_containing(http.post("/api/orders/with-lock", json={**other["body"], "quantity": 2, "lockId": mine["lockId"]},
                                      headers=buyer["headers"]), 400, "expired or is invalid")
    assert hold_status(db, mine["lockId"]) == "active"
    assert order_rows(db, cat["category"]) == [] and order_rows(db, other["category"]) == []
    assert with_lock(http, cat, buyer, mine["lockId"]).status_code == 201  # still the owner's to buy


# ---- reading orders ----------------------------------------------------------------------------------------


def test_my_orders_newest_first_and_only_mine(http, cat, buyer):
    first = buy(http, cat, buyer, 1).json()
    second = buy(http, cat, buyer, 2).json()
    buy(http, cat, person(), 1)
    r = http.get("/api/orders", headers=buyer["headers"])
    assert r.status_code == 200
    assert [o["id"] for o in r.json()] == [second["id"], first["id"]]
    assert all(o["userId"] == buyer["id"] for o in r.json())
    assert_error_containing(http.get("/api/orders"), 401)


def test_order_lists_come_in_pages_when_asked(http, cat, buyer):
    orders = [buy(http, cat, buyer, 1).json()["id"] for _ in range(3)][::-1]  # newest first
    lists = {"/api/orders": buyer, "/api/orders/all": cat["org"], f"/api/orders/event/{cat['event']}": cat["org"]}
    for path, who in lists.items():
        def ids(query):
            r = http.get(path + query, headers=who["headers"])
            assert r.status_code == 200, (path, query, r.text)
            return [o["id"] for o in r.json()]

        assert ids("") == orders  # no page asked: the whole list, as the seed answers
        assert ids("?limit=2") == orders[:2]
        assert ids("?limit=2&offset=2") == orders[2:]
        assert ids("?offset=1") == orders[1:]
        assert ids("?limit=1000&offset=3") == []
        for bad in ("limit=0", "limit=1001", "limit=-1", "limit=abc", "offset=-1", "offset=1.5", f"offset={2**63}"):
            assert_error_containing(http.get(f"{path}?{bad}", headers=who["headers"]), 400)


def test_order_is_visible_to_its_owner_and_the_events_organizer_only(http, cat, buyer):
    order = buy(http, cat, buyer, 1).json()
    r = http.get(f"/api/orders/{order['id']}", headers=buyer["headers"])
    assert r.status_code == 200 and r.json() == order | {"updatedAt": r.json()["updatedAt"]}
    assert http.get(f"/api/orders/{order['id']}", headers=cat["org"]["headers"]).status_code == 200
    assert_error_containing(http.get(f"/api/orders/{order['id']}", headers=person()["headers"]), 403)
    assert_error_containing(http.get(f"/api/orders/{order['id']}", headers=person("organizer")["headers"]), 403)
    assert_error_containing(http.get(f"/api/orders/{order['id']}"), 401)


@pytest.mark.parametrize("order_id, status", [(2**63 - 1, 404), (2**63, 400), (10**19, 400), ("abc", 400),
                                              (0, 400), (-1, 400), ("1.5", 400)])
def test_order_ids_out_of_range_are_clean_errors(http, buyer, order_id, status):
    assert_error_containing(http.get(f"/api/orders/{order_id}", headers=buyer["headers"]), status)
    assert_error_containing(http.post(f"/api/orders/{order_id}/cancel", headers=buyer["headers"]), status)


def test_orders_of_an_event_are_for_its_organizer(http, cat, buyer):
    order = buy(http, cat, buyer, 1).json()
    other = buy(http, cat, person(), 2).json()
    r = http.get(f"/api/orders/event/{cat['event']}", headers=cat["org"]["headers"])
    assert r.status_code == 200
    assert {o["id"] for o in r.json()} == {order["id"], other["id"]}
    assert_error_containing(http.get(f"/api/orders/event/{cat['event']}", headers=buyer["headers"]), 403)
    assert_error_containing(http.get(f"/api/orders/event/{cat['event']}", headers=person("organizer")["headers"]), 403)
    assert_error_containing(http.get(f"/api/orders/event/{MAX_ID}", headers=cat["org"]["headers"]), 404)
    assert_error_containing(http.get("/api/orders/event/abc", headers=cat["org"]["headers"]), 400)


def test_all_orders_are_only_the_organizers_own_events(http, cat, buyer):
    mine = buy(http, cat, buyer, 1).json()
    elsewhere = new_category(http)
    theirs = buy(http, elsewhere, buyer, 1).json()
    r = http.get("/api/orders/all", headers=cat["org"]["headers"])
    assert r.status_code == 200
    assert [o["id"] for o in r.json()] == [mine["id"]]
    assert [o["id"] for o in http.get("/api/orders/all", headers=elsewhere["org"]["headers"]).json()] == [theirs["id"]]
    assert http.get("/api/orders/all", headers=person("organizer")["headers"]).json() == []
    assert_error_containing(http.get("/api/orders/all", headers=buyer["headers"]), 403)
    assert_error_containing(http.get("/api/orders/all"), 401)


# ---- cancelling ------------------------------------------------------------------------------------------


def test_cancel_by_owner_once(http, db, cat, buyer):
    order = buy(http, cat, buyer, 4, notes="mine").json()
    assert_error_containing(http.post(f"/api/orders/{order['id']}/cancel", headers=person()["headers"]), 403)
    assert_error_containing(http.post(f"/api/orders/{order['id']}/cancel", headers=cat["org"]["headers"]), 403)
    assert db_counters(db, cat["category"])["sold"] == 4
    r = http.post(f"/api/orders/{order['id']}/cancel", headers=buyer["headers"])
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "cancelled" and r.json()["id"] == order["id"]
    assert db_counters(db, cat["category"])["sold"] == 0
    assert_error_containing(http.post(f"/api/orders/{order['id']}/cancel", headers=buyer["headers"]), 400,
                            "Only confirmed orders can be cancelled")
    assert db_counters(db, cat["category"])["sold"] == 0
    assert_error_containing(http.post(f"/api/orders/{2**62}/cancel", headers=buyer["headers"]), 404)
    assert_consistent(db, http, cat["event"], cat["category"])


def test_an_order_cannot_be_cancelled_once_its_event_has_taken_place(http, db, cat, buyer):
    order = buy(http, cat, buyer, 2).json()
    make_past(db, cat["event"])
    with unchanged(db):
        assert_error_containing(http.post(f"/api/orders/{order['id']}/cancel", headers=buyer["headers"]), 400,
                                f"Event with ID {cat['event']} has already taken place")
    assert http.get(f"/api/orders/{order['id']}", headers=buyer["headers"]).json()["status"] == "confirmed"


def test_cancelled_seats_sell_again(http, db, cat, buyer):
    order = buy(http, cat, buyer, 10).json()
    assert_error_containing(buy(http, cat, person(), 1), 400)
    http.post(f"/api/orders/{order['id']}/cancel", headers=buyer["headers"])
    assert buy(http, cat, person(), 10).status_code == 201
    assert_consistent(db, http, cat["event"], cat["category"])


# ---- Idempotency-Key -----------------------------------------------------------------------------------


def test_retried_post_returns_the_first_order(http, db, cat, buyer):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = buy(http, cat, buyer, 2, headers=key)
    again = buy(http, cat, buyer, 2, headers=key)
    assert first.status_code == 201 and again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert len(order_rows(db, cat["category"])) == 1 and db_counters(db, cat["category"])["sold"] == 2
    # the same key with another body is an error, not a second order
    assert_error_containing(buy(http, cat, buyer, 3, headers=key), 422)
    # keys are per user: another buyer's identical key is a new order
    assert buy(http, cat, person(), 2, headers=key).status_code == 201
    assert len(order_rows(db, cat["category"])) == 2


def test_retried_order_with_lock_returns_the_first_order(http, db, cat, buyer):
    mine = hold(http, cat, buyer, 2)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = with_lock(http, cat, buyer, mine["lockId"], headers=key)
    again = with_lock(http, cat, buyer, mine["lockId"], headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert len(order_rows(db, cat["category"])) == 1


def test_concurrent_retries_create_one_order(server, db, cat, buyer):
    key = {"Idempotency-Key": uuid.uuid4().hex, **buyer["headers"]}

    def post(_):
        with httpx.Client(base_url=server, timeout=60) as client:
            return client.post("/api/orders", json={**cat["body"], "quantity": 1}, headers=key)

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(post, range(12)))
    assert [r.status_code for r in results] == [201] * 12, [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    assert len(order_rows(db, cat["category"])) == 1 and db_counters(db, cat["category"])["sold"] == 1


@pytest.mark.parametrize("kind", ["order", "with-lock"])
def test_concurrent_retries_that_lose_to_the_first_get_its_order_not_its_refusal(server, http, db, buyer, kind):
    """Retries sent while the first attempt is being decided find no order yet; the first then takes the
    category's last seats (or confirms the hold), so the category refuses them. Each must still be answered
    with the first attempt's order: a refusal would tell the buyer the purchase failed."""
    cat = new_category(http, seats=2)
    key = {"Idempotency-Key": uuid.uuid4().hex, **buyer["headers"]}
    body = {**cat["body"], "quantity": 2}
    if kind == "with-lock":
        body["lockId"] = hold(http, cat, buyer, 2)["lockId"]
    route = "/api/orders" if kind == "order" else "/api/orders/with-lock"

    def post(_):
        with httpx.Client(base_url=server, timeout=60) as client:
            return client.post(route, json=body, headers=key)

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(post, range(12)))
    assert [r.status_code for r in results] == [201] * 12, [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    assert len(order_rows(db, cat["category"])) == 1 and db_counters(db, cat["category"])["sold"] == 2


def test_idempotency_key_too_long_is_refused(http, db, cat, buyer):
    assert_error_containing(buy(http, cat, buyer, 1, headers={"Idempotency-Key": "k" * 256}), 400)
    assert order_rows(db, cat["category"]) == []


# ---- deleted and past events ---------------------------------------------------------------------------


def test_orders_for_a_deleted_event_are_refused(http, db, cat, buyer):
    assert buy(http, cat, buyer, 1).status_code == 201
    assert http.delete(f"/api/events/{cat['event']}", headers=cat["org"]["headers"]).status_code == 200
    assert_error_containing(buy(http, cat, person(), 1), 404)
    assert_error_containing(with_lock(http, cat, person(), None, 1), 404)
    assert db_counters(db, cat["category"])["sold"] == 1


def past_category(http, db) -> dict:
    """An event whose date has passed (through the API if it accepts past dates, else via the DB)."""
    past = (datetime.now(timezone.utc) - timedelta(days=2)).isoformat()
    org = person("organizer")
    r = http.post("/api/events", json={"eventName": "Yesterday", "eventCategory": "music", "eventDate": past,
                                       "ticketCategories": [{"categoryName": "G", "price": "5.00", "totalSeats": 5}]},
                  headers=org["headers"])
    if r.status_code == 201:
        event = r.json()
    else:
        cat = new_category(http, seats=5)
        make_past(db, cat["event"])
        return cat
    c = event["ticketCategories"][0]
    return {"org": org, "event": event["idEvent"], "category": c["id"],
            "body": {"eventId": event["idEvent"], "categoryId": c["id"]}}


def test_orders_and_holds_for_a_past_event_are_refused(http, db, buyer):
    cat = past_category(http, db)
    assert_error_containing(buy(http, cat, buyer, 1), 400, "already taken place")
    assert_error_containing(http.post("/api/holds", json={**cat["body"], "quantity": 1}, headers=buyer["headers"]), 400)
    assert order_rows(db, cat["category"]) == [] and db_counters(db, cat["category"])["held"] == 0


# ---- stats ------------------------------------------------------------------------------------------------


def test_stats_report_holds_and_sales_per_category(http, db, cat, buyer):
    hold(http, cat, person(), 3)
    buy(http, cat, buyer, 2)
    r = http.get("/api/stats")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ticketLocks"]["activeLocks"] >= 1
    assert set(body["ticketLocks"]["locksByStatus"]) == {"active", "confirmed", "released", "expired"}
    mine = [c for c in body["categories"] if c["categoryId"] == cat["category"]]
    assert mine == [{"eventId": cat["event"], "eventName": mine[0]["eventName"], "categoryId": cat["category"],
                     "categoryName": "General", "totalSeats": 10, "heldSeats": 3, "soldSeats": 2,
                     "availableSeats": 5}]


def test_stats_scan_the_hold_history_once_per_interval_and_count_active_holds_every_time(
        database_url, http, cat, monkeypatch):
    """The history (holds ever confirmed, released, expired) is a scan of the whole table: a replica does
    it once for any number of callers until HOLD_HISTORY_SECONDS pass (here as if it never did, until the
    test says so). Active holds are counted each time."""
    import asyncio

    from deployments import orders as orders_module
    from deployments.orders import OrdersService
    from storage import orders_store

    scans: list[dict] = []
    real = orders_store.closed_hold_counts

    async def counted(engine):
        scans.append(await real(engine))
        return scans[-1]

    monkeypatch.setattr(orders_store, "closed_hold_counts", counted)
    monkeypatch.setattr(orders_module, "HOLD_HISTORY_SECONDS", 3600.0)  # however slow the machine, one interval

    async def scenario() -> list[dict]:
        service = OrdersService.func_or_class(database_url)
        try:
            answers = list(await asyncio.gather(*(service.stats() for _ in range(5))))  # at once: one scan
            hold(http, cat, person(), 1)
            answers.append(await service.stats())  # the same history; active holds counted afresh
            service.hold_history.forget(None)  # as if the interval were over
            answers.append(await service.stats())
            return answers
        finally:
            await service.engine.dispose()

    answers = asyncio.run(scenario())
    assert len(scans) == 2
    held = [next(c["heldSeats"] for c in a["categories"] if c["categoryId"] == cat["category"]) for a in answers]
    assert held == [0, 0, 0, 0, 0, 1, 1]
    locks = [a["ticketLocks"] for a in answers]
    assert locks[5]["activeLocks"] >= 1 and locks[5]["locksByStatus"]["active"] >= 1
    for closed in ("confirmed", "released", "expired"):
        assert [x["locksByStatus"][closed] for x in locks] == [scans[0].get(closed, 0)] * 6 + [scans[1].get(closed, 0)]
    assert all(x["totalLocks"] == sum(x["locksByStatus"].values()) for x in locks)
