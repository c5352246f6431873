"""The waiting room through real HTTP, Ray actors and PostgreSQL: sale settings, joining, the draw,
admission in order, passes on holds and orders, operators' controls, and durability."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import ray
from sqlalchemy import text

from actors import NAMESPACE, queue_actor_name
from actors.queue import RELEASE_SWEEP_SECONDS, SALE_REREAD_SECONDS, TICK_SECONDS, EventQueue
from tests import session_apps
from tests.helpers import (
    assert_error,
    assert_error_containing,
    hold_status,
    make_past,
    many_buyers,
    person,
    row,
    scalar,
    unchanged,
    wait_until,
)
from tests.lossy_proxy import LossyProxy

pytestmark = pytest.mark.usefixtures("fast_users")


def soon(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def queued_event(http, org=None, seats: int = 50, **sale) -> dict:
    org = org or person("organizer")
    body = {"eventName": "Queued", "eventCategory": "music", "eventDate": soon(30 * 86400),
            "ticketCategories": [{"categoryName": "General", "price": "10.00", "totalSeats": seats},
                                 {"categoryName": "Balcony", "price": "20.00", "totalSeats": seats}],
            "queueEnabled": True, **sale}
    r = http.post("/api/events", json=body, headers=org["headers"])
    assert r.status_code == 201, r.text
    event = r.json()
    return {"org": org, "id": event["idEvent"], "event": event,
            "categories": [c["id"] for c in event["ticketCategories"]]}


def join(http, buyer, event_id) -> dict:
    r = http.post(f"/api/events/{event_id}/queue", headers=buyer["headers"])
    assert r.status_code == 201, r.text
    return r.json()


def turn(http, buyer, event_id) -> dict:
    r = http.get(f"/api/events/{event_id}/queue", headers=buyer["headers"])
    assert r.status_code == 200, r.text
    return r.json()


def admitted_order(db, event_id) -> list[int]:
    with db.connect() as conn:
        from sqlalchemy import text
        return list(conn.execute(text("SELECT user_id FROM queue_entries WHERE event_id = :e AND status <> 'waiting' "
                                      "ORDER BY admitted_at, place"), {"e": event_id}).scalars())


# ---- sale settings ---------------------------------------------------------------------------------


def test_sale_settings_are_kept_and_shown(http):
    start = soon(3600)
    q = queued_event(http, saleStartsAt=start, admissionPerMinute=120, maxShoppers=30, shoppingMinutes=7,
                     ticketLimit=4)
    e = q["event"]
    assert (e["queueEnabled"], e["admissionPerMinute"], e["maxShoppers"], e["shoppingMinutes"], e["ticketLimit"]) \
        == (True, 120, 30, 7, 4)
    assert datetime.fromisoformat(e["saleStartsAt"]) == datetime.fromisoformat(start)
    r = http.put(f"/api/events/{q['id']}", json={"admissionPerMinute": 60, "maxShoppers": None},
                 headers=q["org"]["headers"])
    assert r.status_code == 200, r.text
    assert (r.json()["admissionPerMinute"], r.json()["maxShoppers"]) == (60, None)


def test_an_event_without_settings_sells_as_before(http):
    org = person("organizer")
    r = http.post("/api/events", json={"eventName": "Plain", "eventCategory": "music", "eventDate": soon(86400),
                                       "ticketCategories": [{"categoryName": "G", "price": 1, "totalSeats": 5}]},
                  headers=org["headers"])
    e = r.json()
    assert "queueEnabled" not in e and "saleStartsAt" not in e  # exactly the replaced system's JSON
    buyer = person()
    r = http.post("/api/holds", json={"eventId": e["idEvent"], "categoryId": e["ticketCategories"][0]["id"],
                                      "quantity": 1}, headers=buyer["headers"])
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("body, message", [
    ({"queueEnabled": True}, "A queue needs admissionPerMinute, maxShoppers or both"),
    ({"queueEnabled": True, "admissionPerMinute": 0}, None),
    ({"shoppingMinutes": 0}, None),
    ({"ticketLimit": -1}, None),
    ({"saleStartsAt": "not a date"}, None),
    ({"queueEnabled": "yes", "maxShoppers": 5}, None),
])
def test_bad_sale_settings_are_refused(http, db, body, message):
    org = person("organizer")
    full = {"eventName": "Bad", "eventCategory": "music", "eventDate": soon(86400), **body}
    with unchanged(db):
        assert_error(http.post("/api/events", json=full, headers=org["headers"]), 400, message)


def test_switching_the_queue_on_without_a_way_in_is_refused(http, db):
    org = person("organizer")
    e = http.post("/api/events", json={"eventName": "E", "eventCategory": "m", "eventDate": soon(86400)},
                  headers=org["headers"]).json()
    with unchanged(db):
        assert_error(http.put(f"/api/events/{e['idEvent']}", json={"queueEnabled": True}, headers=org["headers"]),
                     400, "A queue needs admissionPerMinute, maxShoppers or both")


def test_two_edits_at_once_never_leave_a_queue_without_a_way_in(http, db):
    """Switching the queue on and dropping the rate are each fine alone; at once, whichever comes second
    is refused (400), never both saved (a queue that would admit nobody, for good)."""
    org = person("organizer")
    for _ in range(8):
        e = http.post("/api/events", json={"eventName": "E", "eventCategory": "m", "eventDate": soon(86400),
                                           "admissionPerMinute": 60}, headers=org["headers"]).json()
        path = f"/api/events/{e['idEvent']}"
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda body: http.put(path, json=body, headers=org["headers"]),
                                    [{"queueEnabled": True}, {"admissionPerMinute": None}]))
        assert {r.status_code for r in answers} <= {200, 400}, [r.text for r in answers]
        row_ = row(db, "SELECT queue_enabled, admission_per_minute, max_shoppers FROM events WHERE id = :e",
                   e=e["idEvent"])
        assert not (row_["queue_enabled"] and row_["admission_per_minute"] is None and row_["max_shoppers"] is None)


def test_a_sale_that_has_not_started_refuses_holds_without_a_queue(http, db):
    org = person("organizer")
    e = http.post("/api/events", json={"eventName": "Later", "eventCategory": "m", "eventDate": soon(86400),
                                       "saleStartsAt": soon(3600),
                                       "ticketCategories": [{"categoryName": "G", "price": 1, "totalSeats": 5}]},
                  headers=org["headers"]).json()
    buyer = person()
    body = {"eventId": e["idEvent"], "categoryId": e["ticketCategories"][0]["id"], "quantity": 1}
    assert_error(http.post("/api/holds", json=body, headers=buyer["headers"]), 403,
                 f"The sale of event {e['idEvent']} has not started yet")
    assert scalar(db, "SELECT count(*) FROM holds WHERE event_id = :e", e=e["idEvent"]) == 0


# ---- joining, passes, admission ----------------------------------------------------------------------


def test_join_admit_and_shop_with_a_pass(http, db):
    q = queued_event(http, admissionPerMinute=600)
    buyer, other = person(), person()
    first = join(http, buyer, q["id"])
    assert first["status"] in ("waiting", "admitted") and first["place"] == 1
    again = join(http, buyer, q["id"])
    assert again["place"] == 1  # one place per account
    state = wait_until(lambda: (s := turn(http, buyer, q["id"]))["status"] == "admitted" and s, timeout=30)
    assert state["queuePass"] and state["passExpiresAt"]
    body = {"eventId": q["id"], "categoryId": q["categories"][0], "quantity": 2}
    # no pass, someone else's pass, a forged pass: 403 that says where to queue, and nothing changes
    assert_error_containing(http.post("/api/holds", json=body, headers=buyer["headers"]), 403,
                            f"POST /api/events/{q['id']}/queue")
    assert_error_containing(http.post("/api/holds", json=body,
                                      headers={**other["headers"], "X-Queue-Pass": state["queuePass"]}),
                            403, "another account")
    assert_error_containing(http.post("/api/holds", json=body,
                                      headers={**buyer["headers"], "X-Queue-Pass": state["queuePass"][:-3] + "abc"}),
                            403, "not valid")
    assert_error_containing(http.post("/api/orders", json=body, headers=buyer["headers"]), 403, "queue")
    assert scalar(db, "SELECT count(*) FROM holds WHERE event_id = :e", e=q["id"]) == 0
    with_pass = {**buyer["headers"], "X-Queue-Pass": state["queuePass"]}
    hold = http.post("/api/holds", json=body, headers=with_pass)
    assert hold.status_code == 201, hold.text
    order = http.post("/api/orders/with-lock", json={**body, "lockId": hold.json()["lockId"]}, headers=with_pass)
    assert order.status_code == 201, order.text
    # a pass is for one event only
    other_event = queued_event(http, admissionPerMinute=600)
    assert_error_containing(http.post("/api/holds", json={**body, "eventId": other_event["id"],
                                                          "categoryId": other_event["categories"][0]},
                                      headers=with_pass), 403, "not for event")


def test_a_retried_order_gets_its_order_even_without_a_valid_pass(http, db):
    """A buyer whose answer was lost (a 503, a timeout) retries with the same Idempotency-Key once their
    pass is gone: the answer is the order they have, not a 403 that sends them to queue again."""
    q = queued_event(http, admissionPerMinute=600)
    buyer = person()
    join(http, buyer, q["id"])
    state = wait_until(lambda: (s := turn(http, buyer, q["id"]))["status"] == "admitted" and s, timeout=30)
    body = {"eventId": q["id"], "categoryId": q["categories"][0], "quantity": 1}
    key = {**buyer["headers"], "Idempotency-Key": uuid.uuid4().hex}
    first = http.post("/api/orders", json=body, headers={**key, "X-Queue-Pass": state["queuePass"]})
    assert first.status_code == 201, first.text
    again = http.post("/api/orders", json=body, headers=key)  # no pass any more
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    # without the key it is a new purchase, which needs a pass
    assert_error_containing(http.post("/api/orders", json=body, headers=buyer["headers"]), 403, "queue")
    assert scalar(db, "SELECT count(*) FROM orders WHERE event_id = :e", e=q["id"]) == 1


@pytest.mark.parametrize("path", ["/api/events/{e}/queue", "/api/events/{e}/queue/figures"])
def test_joining_a_queue_that_does_not_exist(http, db, path):
    buyer = person()
    plain = http.post("/api/events", json={"eventName": "P", "eventCategory": "m", "eventDate": soon(86400)},
                      headers=person("organizer")["headers"]).json()["idEvent"]
    with unchanged(db):
        assert_error(http.post(f"/api/events/{plain}/queue", headers=buyer["headers"]), 400,
                     f"Event {plain} has no queue: buy directly")
        assert_error(http.post("/api/events/999999999/queue", headers=buyer["headers"]), 404,
                     "Event with ID 999999999 not found")
        assert_error(http.post("/api/events/abc/queue", headers=buyer["headers"]), 400)
        assert_error(http.post(f"/api/events/{plain}/queue"), 401)


def test_deleted_and_past_events_have_no_queue(http, db):
    q = queued_event(http, maxShoppers=5)
    buyer = person()
    r = http.delete(f"/api/events/{q['id']}", headers=q["org"]["headers"])
    assert r.status_code == 200
    assert_error(http.post(f"/api/events/{q['id']}/queue", headers=buyer["headers"]), 404)
    assert scalar(db, "SELECT count(*) FROM queue_entries WHERE event_id = :e", e=q["id"]) == 0


def test_a_past_event_has_no_queue_to_join(http, db):
    q = queued_event(http, maxShoppers=5)
    make_past(db, q["id"])
    buyer = person()
    with unchanged(db):
        assert_error(http.post(f"/api/events/{q['id']}/queue", headers=buyer["headers"]), 400,
                     f"Event {q['id']} has already taken place")
    assert scalar(db, "SELECT count(*) FROM queue_entries WHERE event_id = :e", e=q["id"]) == 0


def test_the_pre_queue_is_drawn_then_arrivals_queue_in_order(http, db, jwt_secret):
    q = queued_event(http, saleStartsAt=soon(3600), admissionPerMinute=6000)
    early = many_buyers(db, jwt_secret, 30)
    for b in early:
        state = join(http, b, q["id"])
        assert state["status"] == "waiting" and state["place"] is None
    assert scalar(db, "SELECT count(*) FROM queue_entries WHERE event_id = :e AND status <> 'waiting'", e=q["id"]) == 0
    # the organizer brings the sale forward to now: the queue applies it at once and draws
    r = http.put(f"/api/events/{q['id']}", json={"saleStartsAt": soon(0)}, headers=q["org"]["headers"])
    assert r.status_code == 200, r.text
    wait_until(lambda: scalar(db, "SELECT drawn_at FROM event_queues WHERE event_id = :e", e=q["id"]), timeout=30)
    late = many_buyers(db, jwt_secret, 5)
    late_places = [join(http, b, q["id"])["place"] for b in late]
    assert late_places == list(range(31, 36))
    wait_until(lambda: scalar(db, "SELECT count(*) FROM queue_entries WHERE event_id = :e AND status = 'admitted'",
                              e=q["id"]) == 35, timeout=60)
    places = [row(db, "SELECT place FROM queue_entries WHERE event_id = :e AND user_id = :u",
                  e=q["id"], u=b["id"])["place"] for b in early]
    assert sorted(places) == list(range(1, 31))
    assert places != list(range(1, 31))  # shuffled (1 chance in 30! to fail)
    # admitted in place order
    with db.connect() as conn:
        from sqlalchemy import text
        rows = conn.execute(text("SELECT place, admitted_at FROM queue_entries WHERE event_id = :e ORDER BY place"),
                            {"e": q["id"]}).all()
    assert [r.admitted_at for r in rows] == sorted(r.admitted_at for r in rows)


JOINING_BUYERS = 250  # each joins twice, 100 requests in flight: about 15 s; Serve's proxy in the tests takes
# only ~100 requests a second on a 2-core machine (2026-12-03), so more buyers only made the test longer


def test_hundreds_of_concurrent_joins_get_distinct_places(http, db, jwt_secret, server):
    q = queued_event(http, maxShoppers=1)
    buyers = many_buyers(db, jwt_secret, JOINING_BUYERS)

    async def rush():
        gate = asyncio.Semaphore(100)  # httpx's pool slows down quadratically with thousands queued in it
        async with httpx.AsyncClient(base_url=server, timeout=120, limits=httpx.Limits(max_connections=100)) as client:
            async def one(b):
                async with gate:
                    r = await client.post(f"/api/events/{q['id']}/queue", headers=b["headers"])
                assert r.status_code == 201, r.text
                return r.json()["place"]
            # everyone twice, at once: the second join answers the same place
            return await asyncio.gather(*(one(b) for b in buyers + buyers))

    places = asyncio.run(rush())
    first, second = places[:JOINING_BUYERS], places[JOINING_BUYERS:]
    assert first == second
    assert sorted(first) == list(range(1, JOINING_BUYERS + 1))
    assert scalar(db, "SELECT count(*) FROM queue_entries WHERE event_id = :e", e=q["id"]) == JOINING_BUYERS


def test_cap_admits_as_buyers_check_out_or_their_time_runs_out(http, db, jwt_secret):
    q = queued_event(http, maxShoppers=2, shoppingMinutes=1)
    buyers = many_buyers(db, jwt_secret, 4)
    for b in buyers:
        join(http, b, q["id"])
    wait_until(lambda: turn(http, buyers[1], q["id"])["status"] == "admitted", timeout=30)
    third = turn(http, buyers[2], q["id"])
    assert third["status"] == "waiting" and third["peopleAhead"] == 0

    def shop(buyer, path, category, quantity=1):
        state = turn(http, buyer, q["id"])
        return http.post(path, json={"eventId": q["id"], "categoryId": q["categories"][category], "quantity": quantity},
                         headers={**buyer["headers"], "X-Queue-Pass": state["queuePass"]})

    # The second buyer buys: their place under the cap goes to the next buyer at once (not when their
    # pass runs out, a minute later), and their pass still works until then.
    assert shop(buyers[1], "/api/orders", 0).status_code == 201
    wait_until(lambda: turn(http, buyers[2], q["id"])["status"] == "admitted", timeout=30)
    figures = http.get(f"/api/events/{q['id']}/queue/figures").json()
    assert (figures["admitted"], figures["shopping"], figures["waiting"]) == (3, 2, 1)
    assert shop(buyers[1], "/api/orders", 1).status_code == 201
    # The first buyer holds seats, then their shopping time runs out (moved forward in the database and
    # the queue actor restarted, as a minute is long for a test). The restarted queue reads who has
    # bought from the orders: the second buyer still does not count, so the fourth gets the freed place.
    h = shop(buyers[0], "/api/holds", 1, quantity=2)
    assert h.status_code == 201, h.text
    with db.begin() as conn:
        from sqlalchemy import text
        conn.execute(text("UPDATE queue_entries SET pass_expires_at = now() WHERE event_id = :e AND user_id = :u"),
                     {"e": q["id"], "u": buyers[0]["id"]})
    ray.kill(ray.get_actor(queue_actor_name(q["id"]), namespace=NAMESPACE), no_restart=False)
    wait_until(lambda: turn(http, buyers[0], q["id"])["status"] == "expired", timeout=30)
    wait_until(lambda: scalar(db, "SELECT status FROM holds WHERE id = :h", h=h.json()["lockId"]) == "released",
               timeout=30)
    wait_until(lambda: turn(http, buyers[3], q["id"])["status"] == "admitted", timeout=30)
    figures = http.get(f"/api/events/{q['id']}/queue/figures").json()
    assert (figures["admitted"], figures["shopping"], figures["waiting"]) == (4, 2, 0)
    # a pass past its expiry (signed like the real ones) is refused
    from domain.passes import issue_pass
    stale = issue_pass(buyers[0]["id"], q["id"], datetime.now(timezone.utc) - timedelta(seconds=5), jwt_secret)
    assert_error_containing(http.post("/api/holds", json={"eventId": q["id"], "categoryId": q["categories"][0],
                                                          "quantity": 1},
                                      headers={**buyers[0]["headers"], "X-Queue-Pass": stale}),
                            403, "expired")


def test_a_buyer_who_cancels_their_order_counts_against_the_cap_again(http, db, jwt_secret):
    """Buying frees a buyer's place under the cap; cancelling that order takes it back (they are shopping
    again with a valid pass), so order-and-cancel cannot let more shoppers in than the cap."""
    q = queued_event(http, maxShoppers=1, shoppingMinutes=10, admissionPerMinute=6000)
    first, second, third = many_buyers(db, jwt_secret, 3)
    for b in (first, second, third):
        join(http, b, q["id"])

    def buy(buyer):
        state = wait_until(lambda: (s := turn(http, buyer, q["id"]))["status"] == "admitted" and s, timeout=30)
        r = http.post("/api/orders", json={"eventId": q["id"], "categoryId": q["categories"][0], "quantity": 1},
                      headers={**buyer["headers"], "X-Queue-Pass": state["queuePass"]})
        assert r.status_code == 201, r.text
        return r.json()

    def shopping():
        return http.get(f"/api/events/{q['id']}/queue/figures").json()["shopping"]

    order = buy(first)
    wait_until(lambda: turn(http, second, q["id"])["status"] == "admitted", timeout=30)
    r = http.post(f"/api/orders/{order['id']}/cancel", headers=first["headers"])
    assert r.status_code in (200, 201), r.text
    wait_until(lambda: shopping() == 2, timeout=30)  # the first buyer is shopping again, the second too
    buy(second)
    wait_until(lambda: shopping() == 1, timeout=30)  # the first still shops: the cap of one is full
    time.sleep(3 * TICK_SECONDS)
    assert turn(http, third, q["id"])["status"] == "waiting"


def test_operators_pause_resume_and_read_figures(http, db, jwt_secret):
    q = queued_event(http, admissionPerMinute=6000)
    org = q["org"]
    r = http.patch(f"/api/events/{q['id']}/queue", json={"queuePaused": True}, headers=org["headers"])
    assert r.status_code == 200, r.text and r.json()["paused"] is True
    buyers = many_buyers(db, jwt_secret, 5)
    for b in buyers:
        join(http, b, q["id"])
    figures = http.get(f"/api/events/{q['id']}/queue/figures").json()
    assert (figures["paused"], figures["waiting"], figures["admitted"]) == (True, 5, 0)
    assert turn(http, buyers[4], q["id"])["peopleAhead"] == 4
    # only the owner controls it
    assert_error(http.patch(f"/api/events/{q['id']}/queue", json={"queuePaused": False},
                            headers=person("organizer")["headers"]), 403)
    assert_error(http.patch(f"/api/events/{q['id']}/queue", json={"admissionPerMinute": -3},
                            headers=org["headers"]), 400)
    assert_error(http.patch(f"/api/events/{q['id']}/queue", json={"bogus": 1}, headers=org["headers"]), 400)
    assert_error(http.patch(f"/api/events/{q['id']}/queue", json={"queuePaused": None}, headers=org["headers"]), 400)
    r = http.patch(f"/api/events/{q['id']}/queue", json={"queuePaused": False, "admissionPerMinute": 600},
                   headers=org["headers"])
    assert r.status_code == 200 and r.json()["admissionPerMinute"] == 600
    wait_until(lambda: http.get(f"/api/events/{q['id']}/queue/figures").json()["admitted"] == 5, timeout=30)
    stats = http.get("/api/stats").json()
    mine = [s for s in stats["queues"] if s["eventId"] == q["id"]]
    assert mine and mine[0]["admitted"] == 5 and mine[0]["shopping"] == 5


def test_killing_the_queue_actor_keeps_every_place_and_admission(http, db, jwt_secret):
    q = queued_event(http, admissionPerMinute=240)  # 4 a second
    buyers = many_buyers(db, jwt_secret, 40)
    places = {b["id"]: join(http, b, q["id"])["place"] for b in buyers}
    for _ in range(3):  # killed mid-admission, three times
        wait_until(lambda: scalar(db, "SELECT count(*) FROM queue_entries WHERE event_id = :e AND status = 'admitted'",
                                  e=q["id"]) > 0, timeout=30)
        ray.kill(ray.get_actor(queue_actor_name(q["id"]), namespace=NAMESPACE), no_restart=False)
    assert {b["id"]: join(http, b, q["id"])["place"] for b in buyers} == places
    wait_until(lambda: scalar(db, "SELECT count(*) FROM queue_entries WHERE event_id = :e AND status = 'admitted'",
                              e=q["id"]) == 40, timeout=60)
    with db.connect() as conn:
        from sqlalchemy import text
        rows = conn.execute(text("SELECT place, admitted_at FROM queue_entries WHERE event_id = :e ORDER BY place"),
                            {"e": q["id"]}).all()
    assert [r.admitted_at for r in rows] == sorted(r.admitted_at for r in rows)  # never out of order
    assert Counter(places.values()) == Counter(range(1, 41))


def test_admission_rank_does_not_depend_on_when_a_buyer_joined_the_pre_queue(http, db, jwt_secret):
    """200 buyers join the pre-queue one after another; after the draw, the rank correlation between
    arrival and place is that of a random permutation (|rho| < 0.3 fails by chance with p < 1e-4)."""
    q = queued_event(http, saleStartsAt=soon(3600), maxShoppers=1)
    buyers = many_buyers(db, jwt_secret, 200)
    for b in buyers:
        assert join(http, b, q["id"])["place"] is None
    r = http.put(f"/api/events/{q['id']}", json={"saleStartsAt": soon(0)}, headers=q["org"]["headers"])
    assert r.status_code == 200, r.text
    wait_until(lambda: scalar(db, "SELECT drawn_at FROM event_queues WHERE event_id = :e", e=q["id"]), timeout=30)
    drawn = {r["user_id"]: r["place"] for r in _entries(db, q["id"])}  # the API's answer: checked for place 1
    places = [drawn[b["id"]] for b in buyers]
    assert sorted(places) == list(range(1, 201))
    n = len(places)
    d2 = sum((arrival + 1 - place) ** 2 for arrival, place in enumerate(places))
    rho = 1 - 6 * d2 / (n * (n * n - 1))
    assert abs(rho) < 0.3, rho
    # and the first place goes to the buyer at that place, in order
    first = buyers[places.index(1)]
    state = wait_until(lambda: (s := turn(http, first, q["id"]))["status"] == "admitted" and s, timeout=30)
    assert state["place"] == 1
    assert scalar(db, "SELECT count(*) FROM queue_entries WHERE event_id = :e AND status <> 'waiting'",
                  e=q["id"]) == 1


def test_the_ticket_limit_set_through_the_api_holds_across_categories(http):
    q = queued_event(http, admissionPerMinute=6000, ticketLimit=3)
    buyer = person()
    join(http, buyer, q["id"])
    state = wait_until(lambda: (s := turn(http, buyer, q["id"]))["status"] == "admitted" and s, timeout=30)
    headers = {**buyer["headers"], "X-Queue-Pass": state["queuePass"]}
    ok = http.post("/api/holds", json={"eventId": q["id"], "categoryId": q["categories"][0], "quantity": 2},
                   headers=headers)
    assert ok.status_code == 201, ok.text
    assert_error(http.post("/api/orders", json={"eventId": q["id"], "categoryId": q["categories"][1], "quantity": 2},
                           headers=headers), 400, "You can buy at most 3 tickets for this event")
    # raised live by the organizer: the same purchase goes through
    r = http.put(f"/api/events/{q['id']}", json={"ticketLimit": 4}, headers=q["org"]["headers"])
    assert r.status_code == 200, r.text
    bought = http.post("/api/orders", json={"eventId": q["id"], "categoryId": q["categories"][1], "quantity": 2},
                       headers=headers)
    assert bought.status_code == 201, bought.text


def test_a_whole_restart_keeps_places_and_admissions_and_goes_on_in_order(http, db, jwt_secret):
    """The queue actor killed for good and every deployment of the application redeployed, as after a
    restart of the system: the new ingress starts the queue again (nobody has to call it), and admission
    resumes where it stopped, in order, admitting nobody twice."""
    q = queued_event(http, admissionPerMinute=120)  # two a second
    buyers = many_buyers(db, jwt_secret, 12)
    places = {b["id"]: join(http, b, q["id"])["place"] for b in buyers}
    wait_until(lambda: scalar(db, "SELECT count(*) FROM queue_entries WHERE event_id = :e AND status = 'admitted'",
                              e=q["id"]) >= 2, timeout=60)
    ray.kill(ray.get_actor(queue_actor_name(q["id"]), namespace=NAMESPACE), no_restart=True)
    before = {r["user_id"]: r["admitted_at"] for r in _entries(db, q["id"]) if r["admitted_at"]}
    session_apps.restart("ticketing")
    wait_until(lambda: scalar(db, "SELECT count(*) FROM queue_entries WHERE event_id = :e AND status = 'admitted'",
                              e=q["id"]) == 12, timeout=180)
    rows = _entries(db, q["id"])
    assert {r["user_id"]: r["place"] for r in rows} == places
    assert {r["user_id"]: r["admitted_at"] for r in rows if r["user_id"] in before} == before
    by_place = sorted(rows, key=lambda r: r["place"])
    assert [r["admitted_at"] for r in by_place] == sorted(r["admitted_at"] for r in by_place)


def _entries(db, event_id: int) -> list[dict]:
    from sqlalchemy import text

    with db.connect() as conn:
        return [dict(r) for r in conn.execute(text("SELECT * FROM queue_entries WHERE event_id = :e"),
                                              {"e": event_id}).mappings()]


def test_a_join_whose_write_fails_is_answered_not_left_waiting(http, database_url):
    """The queue actor's connection breaks while it writes a batch of joins: the joiners get an answer (the
    replica asks again, and the buyer gets a place), and the replica's later joins for the event go through.
    Before, the batch's callers waited forever, and so did every later join for the event on that replica."""
    q = queued_event(http, admissionPerMinute=600)
    proxy = LossyProxy(database_url, marker=b"INSERT INTO queue_entries")
    name = queue_actor_name(q["id"])
    ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
    queue = EventQueue.options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote(
        proxy.url, q["id"])
    ray.get(queue.figures.remote(), timeout=120)  # loaded through the proxy
    proxy.armed = True
    first, second = person(), person()
    r = http.post(f"/api/events/{q['id']}/queue", headers=first["headers"], timeout=45)
    assert proxy.broken == 1, "the join's write did not go through the proxy"
    assert r.status_code == 201, r.text
    assert r.json()["place"] == 1
    r = http.post(f"/api/events/{q['id']}/queue", headers=second["headers"], timeout=45)
    assert r.status_code == 201, r.text
    assert r.json()["place"] == 2


def test_a_queue_whose_load_fails_halfway_draws_nothing_until_it_has_loaded(http, db, jwt_secret, database_url):
    """The sale started while the queue actor was away, and its first load breaks after reading the sale
    but before reading the pre-queue. Its loop must not step on that half state (it would draw an empty
    pre-queue, for good, and nobody in it would ever be admitted): once a load succeeds, the pre-queue is
    drawn and admitted."""
    q = queued_event(http, saleStartsAt=soon(3600), admissionPerMinute=6000)
    early = many_buyers(db, jwt_secret, 3)
    for b in early:
        assert join(http, b, q["id"])["place"] is None  # in the pre-queue
    name = queue_actor_name(q["id"])
    ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
    with db.begin() as conn:  # the sale starts while no queue actor runs
        conn.execute(text("UPDATE events SET sale_starts_at = now() - interval '1 second' WHERE id = :e"),
                     {"e": q["id"]})
    proxy = LossyProxy(database_url, marker=b"SELECT event_queues.drawn_at")
    proxy.armed = True
    queue = EventQueue.options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote(
        proxy.url, q["id"])
    with pytest.raises(ray.exceptions.RayError):
        ray.get(queue.figures.remote(), timeout=120)  # the load broke after reading the sale
    assert proxy.broken == 1
    time.sleep(3 * TICK_SECONDS)  # ticks of the loop, which must not draw on that half state
    wait_until(lambda: scalar(db, "SELECT count(*) FROM queue_entries WHERE event_id = :e AND status = 'admitted'",
                              e=q["id"]) == 3, timeout=60)
    places = scalar(db, "SELECT array_agg(place ORDER BY place) FROM queue_entries WHERE event_id = :e", e=q["id"])
    assert places == [1, 2, 3]


def test_a_settings_change_whose_refresh_never_came_still_applies(http, db, jwt_secret):
    """An operator's change is saved, and its refresh of the queue actor fails (the organizer got a 503):
    the actor reads the settings again on its own, so the pause applies all the same."""
    q = queued_event(http, admissionPerMinute=6000)
    assert http.get(f"/api/events/{q['id']}/queue/figures").json()["paused"] is False
    with db.begin() as conn:  # saved, but no refresh reaches the actor
        conn.execute(text("UPDATE events SET queue_paused = true WHERE id = :e"), {"e": q["id"]})
    wait_until(lambda: http.get(f"/api/events/{q['id']}/queue/figures").json()["paused"], timeout=4 * SALE_REREAD_SECONDS)
    buyer = many_buyers(db, jwt_secret, 1)[0]
    join(http, buyer, q["id"])
    time.sleep(3 * TICK_SECONDS)
    assert turn(http, buyer, q["id"])["status"] == "waiting"  # paused: nobody is admitted


def test_a_hold_left_after_its_buyers_turn_ended_goes_back_on_sale(http, db):
    """A buyer's turn has ended, but a hold of theirs is still active: its release at the end of the turn
    failed, or it was written just after. The queue finds it and releases it, instead of leaving the seats
    blocked until the hold's own time runs out (5 min by default)."""
    q = queued_event(http, admissionPerMinute=600)
    buyer = person()
    join(http, buyer, q["id"])
    state = wait_until(lambda: (s := turn(http, buyer, q["id"]))["status"] == "admitted" and s, timeout=30)
    body = {"eventId": q["id"], "categoryId": q["categories"][0], "quantity": 2}
    r = http.post("/api/holds", json=body, headers={**buyer["headers"], "X-Queue-Pass": state["queuePass"]})
    assert r.status_code == 201, r.text
    with db.begin() as conn:  # the turn ended, and nothing released the hold
        conn.execute(text("UPDATE queue_entries SET status = 'expired' WHERE event_id = :e AND user_id = :u"),
                     {"e": q["id"], "u": buyer["id"]})
    wait_until(lambda: hold_status(db, r.json()["lockId"]) == "released", timeout=6 * RELEASE_SWEEP_SECONDS)


def test_a_join_that_came_before_the_start_is_in_the_draw_though_not_written_yet(http, db, database_url):
    """A join arrives before the sale starts while the queue is still writing an earlier one (a slow
    write, or a backlog in a rush), and is written only after the start: it is in the draw, as the rule
    says (whoever came before the start), not queued behind the whole pre-queue."""
    starts = datetime.now(timezone.utc) + timedelta(seconds=20)
    q = queued_event(http, saleStartsAt=starts.isoformat(), admissionPerMinute=6000, queuePaused=True)
    name = queue_actor_name(q["id"])
    ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
    proxy = LossyProxy(database_url, marker=b"INSERT INTO queue_entries")
    queue = EventQueue.options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote(
        proxy.url, q["id"])
    ray.get(queue.figures.remote(), timeout=120)
    ahead = (starts - datetime.now(timezone.utc)).total_seconds()
    assert ahead > 3, "the set-up took too long to leave time before the start"
    proxy.delay_s, proxy.armed = ahead + 2, True
    first, second = person(), person()
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(join, http, first, q["id"])  # its write takes until after the start
        wait_until(lambda: proxy.delayed == 1, timeout=30)
        later = pool.submit(join, http, second, q["id"])  # arrives before the start, waits for that write
        slow.result(timeout=60), later.result(timeout=60)
    assert proxy.delayed == 1
    wait_until(lambda: scalar(db, "SELECT drawn_at FROM event_queues WHERE event_id = :e", e=q["id"]))
    # Both places were given by the draw's transaction (paused: no admission has touched the rows since);
    # a join queued behind the pre-queue would have been inserted with its place by a transaction of its own.
    assert scalar(db, "SELECT count(DISTINCT xmin::text) FROM queue_entries WHERE event_id = :e", e=q["id"]) == 1
    assert scalar(db, "SELECT array_agg(place ORDER BY place) FROM queue_entries WHERE event_id = :e",
                  e=q["id"]) == [1, 2]


def _entry_of(db, event_id: int, user_id: int):
    """(status, admitted_at, pass_expires_at) of a buyer's queue entry."""
    with db.connect() as conn:
        return conn.execute(text("SELECT status, admitted_at, pass_expires_at FROM queue_entries "
                                 "WHERE event_id = :e AND user_id = :u"), {"e": event_id, "u": user_id}).one()


def test_a_second_queue_instance_that_meets_an_admission_it_did_not_make_takes_the_databases(http, db, database_url):
    """Two instances of one event's queue (one left behind by a network split, reachable through handles
    cached before it). One admits the first buyer; the other then admits the same buyer: its write
    changes nothing, and it must not go on believing its own admission (its time, its pass's expiry,
    which it would hand out in passes). It reloads the truth."""
    q = queued_event(http, queuePaused=True, maxShoppers=1, admissionPerMinute=6000)
    first, second = person(), person()
    join(http, first, q["id"]), join(http, second, q["id"])
    other = EventQueue.remote(database_url, q["id"])
    try:
        assert ray.get(other.figures.remote(), timeout=120).waiting == 2
        r = http.patch(f"/api/events/{q['id']}/queue", json={"queuePaused": False}, headers=q["org"]["headers"])
        assert r.status_code == 200, r.text
        wait_until(lambda: _entry_of(db, q["id"], first["id"]).status == "admitted", timeout=30)
        ray.get(other.refresh.remote(), timeout=60)  # now it, too, admits its first waiting buyer
        time.sleep(3 * TICK_SECONDS)
        truth = _entry_of(db, q["id"], first["id"])
        mine, figures = ray.get(other.state.remote(first["id"]), timeout=60)
        assert (mine.status, mine.admitted_at, mine.pass_expires_at) == tuple(truth)
        assert (figures.admitted, figures.waiting, figures.shopping) == (1, 1, 1)
        assert _entry_of(db, q["id"], second["id"]).status == "waiting"  # the cap of one still holds
    finally:
        ray.kill(other)


def test_a_queue_instance_never_ends_a_turn_the_database_says_goes_on(http, db, database_url):
    """An instance remembers a pass that has run out, while the database (written by another instance, or
    by a node whose clock is ahead) says the turn goes on: the turn is not ended, and the buyer's holds
    are not released."""
    q = queued_event(http, admissionPerMinute=6000)
    buyer = person()
    join(http, buyer, q["id"])
    wait_until(lambda: _entry_of(db, q["id"], buyer["id"]).status == "admitted", timeout=30)
    ray.kill(ray.get_actor(queue_actor_name(q["id"]), namespace=NAMESPACE), no_restart=True)
    with db.begin() as conn:  # closed while this instance loads, so it steps nothing yet
        conn.execute(text("UPDATE events SET queue_enabled = false WHERE id = :e"), {"e": q["id"]})
        conn.execute(text("UPDATE queue_entries SET pass_expires_at = now() - interval '1 second' "
                          "WHERE event_id = :e"), {"e": q["id"]})
    other = EventQueue.remote(database_url, q["id"])
    try:
        assert ray.get(other.figures.remote(), timeout=120).shopping == 1
        with db.begin() as conn:  # the database's truth moves on: the turn lasts another hour
            conn.execute(text("UPDATE queue_entries SET pass_expires_at = now() + interval '1 hour' "
                              "WHERE event_id = :e"), {"e": q["id"]})
            conn.execute(text("UPDATE events SET queue_enabled = true WHERE id = :e"), {"e": q["id"]})
        ray.get(other.refresh.remote(), timeout=60)  # open again: it would expire what it remembers
        time.sleep(3 * TICK_SECONDS)
        truth = _entry_of(db, q["id"], buyer["id"])
        assert truth.status == "admitted"
        mine, _ = ray.get(other.state.remote(buyer["id"]), timeout=60)
        assert mine.pass_expires_at == truth.pass_expires_at
    finally:
        ray.kill(other)


def test_an_event_whose_queue_cannot_start_yet_is_created_once_and_its_queue_follows(http, db):
    """Creating an event with a queue answers 201 even when its queue actor cannot start right then (the
    event is saved: a 503 would have the organizer create it a second time); the queue starts later."""
    next_id = scalar(db, "SELECT nextval('events_id_seq')") + 1
    name = queue_actor_name(next_id)
    broken = EventQueue.options(name=name, namespace=NAMESPACE, lifetime="detached").remote(
        "postgresql+psycopg://nobody@127.0.0.1:9/nothing", next_id)  # cannot load: no database there
    org = person("organizer")
    title = f"Queue later {uuid.uuid4().hex[:8]}"
    body = {"eventName": title, "eventCategory": "music", "eventDate": soon(30 * 86400), "queueEnabled": True,
            "admissionPerMinute": 6000,
            "ticketCategories": [{"categoryName": "General", "price": "10.00", "totalSeats": 5}]}
    r = http.post("/api/events", json=body, headers=org["headers"])
    assert r.status_code == 201, r.text
    assert r.json()["idEvent"] == next_id
    assert scalar(db, "SELECT count(*) FROM events WHERE name = :n", n=title) == 1
    ray.kill(broken, no_restart=True)
    buyer = person()
    wait_until(lambda: http.post(f"/api/events/{next_id}/queue", headers=buyer["headers"]).status_code == 201,
               timeout=60)
    wait_until(lambda: turn(http, buyer, next_id)["status"] == "admitted", timeout=30)


def test_a_queue_actor_killed_for_good_is_started_again_without_any_caller(http, db, jwt_secret):
    """Nobody polls, nobody joins: the ingress replicas look after the queues of events whose queue is on."""
    q = queued_event(http, queuePaused=True, admissionPerMinute=6000)
    buyers = many_buyers(db, jwt_secret, 5)
    for b in buyers:
        join(http, b, q["id"])
    ray.kill(ray.get_actor(queue_actor_name(q["id"]), namespace=NAMESPACE), no_restart=True)
    with db.begin() as conn:  # resumed behind the API's back, so no call reaches the queue
        from sqlalchemy import text
        conn.execute(text("UPDATE events SET queue_paused = false WHERE id = :e"), {"e": q["id"]})
    wait_until(lambda: scalar(db, "SELECT count(*) FROM queue_entries WHERE event_id = :e AND status = 'admitted'",
                              e=q["id"]) == 5, timeout=120)
