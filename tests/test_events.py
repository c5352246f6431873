"""Events API (seed §1.4 minus reserve/release): create, list, upcoming, by category, by id, update,
soft delete and ticket categories, with the seed's bugs fixed. Every rejected request changes nothing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import assert_error, create_event, future, register, row, scalar, unchanged, unique

SALE_KEYS = {"saleStartsAt", "queueEnabled", "queuePaused", "admissionPerMinute", "maxShoppers", "shoppingMinutes",
             "ticketLimit"}
EVENT_KEYS = {"idEvent", "eventName", "eventCategory", "description", "eventDate", "location", "isActive",
              "createdBy", "createdAt", "updatedAt", "ticketCategories"}


def when(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def past(days: int = 1) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()


def body(**overrides) -> dict:
    return {
        "eventName": unique("Show"),
        "eventCategory": "music",
        "eventDate": future(),
        "location": "Arena",
        "ticketCategories": [{"categoryName": "General", "price": "10.00", "totalSeats": 5}],
        **overrides,
    }


@pytest.fixture(scope="module")
def people(server):
    import httpx

    with httpx.Client(base_url=server, timeout=60) as client:
        return {"org": register(client, "organizer"), "other": register(client, "organizer"),
                "assistant": register(client)}


@pytest.fixture()
def org(people):
    return people["org"]


@pytest.fixture()
def other(people):
    return people["other"]


@pytest.fixture()
def assistant(people):
    return people["assistant"]


@pytest.fixture(scope="module")
def refused_edits_target(server, people):
    """One event of `org` for the refused update and delete tests: each asserts that its refusal changed nothing,
    so they can share it (an event costs its category actor's start, about 1.5 s on a 2-core machine)."""
    import httpx

    with httpx.Client(base_url=server, timeout=60) as client:
        return create_event(client, people["org"])


# ---- create ------------------------------------------------------------------------------------------


def test_create_event_as_organizer(http, db, org):
    payload = body(description="Big night", ticketCategories=[
        {"categoryName": "VIP", "price": "99.99", "totalSeats": 10, "description": "front"},
        {"categoryName": "General", "price": 12.5, "totalSeats": 100}])
    r = http.post("/api/events", json=payload, headers=org["headers"])
    assert r.status_code == 201, r.text
    event = r.json()
    assert set(event) == EVENT_KEYS
    assert event["eventName"] == payload["eventName"] and event["eventCategory"] == "music"
    assert event["description"] == "Big night" and event["location"] == "Arena"
    assert event["isActive"] is True and event["createdBy"] == org["id"]
    assert when(event["eventDate"]) == datetime.fromisoformat(payload["eventDate"])
    vip, general = event["ticketCategories"]
    assert {k: vip[k] for k in ("categoryName", "price", "totalSeats", "reservedSeats", "availableSeats",
                                "description", "isActive", "eventId")} == {
        "categoryName": "VIP", "price": "99.99", "totalSeats": 10, "reservedSeats": 0, "availableSeats": 10,
        "description": "front", "isActive": True, "eventId": event["idEvent"]}
    assert general["price"] == "12.50" and general["totalSeats"] == 100
    stored = row(db, "SELECT name, created_by, is_active FROM events WHERE id = :id", id=event["idEvent"])
    assert dict(stored) == {"name": payload["eventName"], "created_by": org["id"], "is_active": True}
    assert scalar(db, "SELECT count(*) FROM ticket_categories WHERE event_id = :id", id=event["idEvent"]) == 2


def test_create_event_without_categories(http, org):
    r = http.post("/api/events", json=body(ticketCategories=[]), headers=org["headers"])
    assert r.status_code == 201 and r.json()["ticketCategories"] == []
    r = http.post("/api/events", json={k: v for k, v in body().items() if k != "ticketCategories"},
                  headers=org["headers"])
    assert r.status_code == 201 and r.json()["ticketCategories"] == []


def test_create_event_as_assistant_is_403(http, db, assistant):
    with unchanged(db):
        r = http.post("/api/events", json=body(), headers=assistant["headers"])
    assert r.json() == {"statusCode": 403, "message": "Only organizers can create events", "error": "Forbidden"}


def test_create_event_without_token_is_401(http, db):
    with unchanged(db):
        assert_error(http.post("/api/events", json=body()), 401, "missing token!")


def test_server_owned_fields_in_create_body_cannot_hijack_an_existing_event(http, db, org, other):
    """Seed: an existing `idEvent` / category `id` in the body made `save` update and re-own that row."""
    victim = create_event(http, org, seats=7, price="20.00")
    victim_cat = victim["ticketCategories"][0]
    before_event = row(db, "SELECT * FROM events WHERE id = :id", id=victim["idEvent"])
    before_cat = row(db, "SELECT id, event_id, name, price, total_seats, is_active FROM ticket_categories "
                         "WHERE id = :id", id=victim_cat["id"])
    r = http.post("/api/events", headers=other["headers"], json=body(
        idEvent=victim["idEvent"], id=victim["idEvent"], createdBy=org["id"], isActive=False,
        createdAt="2000-01-01T00:00:00Z",
        ticketCategories=[{"id": victim_cat["id"], "eventId": victim["idEvent"], "categoryName": "Stolen",
                           "price": "1.00", "totalSeats": 3, "reservedSeats": 3, "heldSeats": 2,
                           "isActive": False}]))
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["idEvent"] != victim["idEvent"] and new["createdBy"] == other["id"] and new["isActive"] is True
    assert when(new["createdAt"]).year > 2000
    cat = new["ticketCategories"][0]
    assert cat["id"] != victim_cat["id"] and cat["eventId"] == new["idEvent"]
    assert cat["reservedSeats"] == 0 and cat["heldSeats"] == 0 and cat["availableSeats"] == 3 and cat["isActive"]
    assert row(db, "SELECT * FROM events WHERE id = :id", id=victim["idEvent"]) == before_event
    assert row(db, "SELECT id, event_id, name, price, total_seats, is_active FROM ticket_categories "
                   "WHERE id = :id", id=victim_cat["id"]) == before_cat


@pytest.mark.parametrize(
    "category",
    [
        {"categoryName": "G", "price": "-1.00", "totalSeats": 5},
        {"categoryName": "G", "price": -0.01, "totalSeats": 5},
        {"categoryName": "G", "price": "10.00", "totalSeats": -1},
        {"categoryName": "G", "price": "10.00", "totalSeats": 1.5},
        {"categoryName": "G", "price": "10.00", "totalSeats": "5"},
        {"categoryName": "G", "price": "10.00", "totalSeats": True},
        {"categoryName": "G", "price": "10.00", "totalSeats": 10_000_001},
        {"categoryName": "G", "price": "10.001", "totalSeats": 5},
        {"categoryName": "G", "price": "123456789.00", "totalSeats": 5},
        {"categoryName": "G", "price": "NaN", "totalSeats": 5},
        {"categoryName": "G", "price": "Infinity", "totalSeats": 5},
        {"categoryName": "G", "price": "ten", "totalSeats": 5},
        {"categoryName": "G", "price": True, "totalSeats": 5},
        {"categoryName": "G", "price": None, "totalSeats": 5},
        {"categoryName": "G", "totalSeats": 5},
        {"categoryName": "G", "price": "10.00"},
        {"price": "10.00", "totalSeats": 5},
        {"categoryName": "", "price": "10.00", "totalSeats": 5},
        {"categoryName": "x" * 101, "price": "10.00", "totalSeats": 5},
        "General",
    ],
    ids=["negative-price-str", "negative-price-num", "negative-seats", "fractional-seats", "string-seats",
         "bool-seats", "too-many-seats", "three-decimals", "price-overflow", "nan", "infinity", "word-price",
         "bool-price", "null-price", "no-price", "no-seats", "no-name", "empty-name", "long-name", "not-object"],
)
def test_create_event_with_bad_ticket_category_is_400(http, db, org, category):
    with unchanged(db):
        r = http.post("/api/events", json=body(ticketCategories=[category]), headers=org["headers"])
    assert_error(r, 400)


@pytest.mark.parametrize(
    "change",
    [
        {"eventName": None}, {"eventDate": None}, {"eventCategory": None},
        {"eventName": ""}, {"eventName": "x" * 256}, {"eventCategory": "x" * 101}, {"eventName": 5},
        {"eventDate": "tomorrow"}, {"eventDate": "2030-02-30T00:00:00Z"}, {"eventDate": 10**20},
        {"ticketCategories": "VIP"}, {"ticketCategories": {"categoryName": "G"}},
        {"ticketCategories": [{"categoryName": "G", "price": "1.00", "totalSeats": 1}] * 51},
        {"location": "x" * 256}, {"description": 42},
    ],
    ids=["null-name", "null-date", "null-category", "empty-name", "long-name", "long-category", "int-name",
         "word-date", "impossible-date", "huge-timestamp", "categories-string", "categories-object",
         "too-many-categories", "long-location", "int-description"],
)
def test_create_event_with_bad_fields_is_400(http, db, org, change):
    with unchanged(db):
        r = http.post("/api/events", json=body(**change), headers=org["headers"])
    assert_error(r, 400)


@pytest.mark.parametrize("missing", ["eventName", "eventDate", "eventCategory"])
def test_create_event_missing_required_field_is_400(http, db, org, missing):
    payload = {k: v for k, v in body().items() if k != missing}
    with unchanged(db):
        r = http.post("/api/events", json=payload, headers=org["headers"])
    message = assert_error(r, 400)["message"]
    assert any(missing in m for m in message)


def test_price_is_an_exact_decimal_string_everywhere(http, org):
    category = unique("jazz")
    event = create_event(http, org, price="12.5", eventCategory=category,
                         ticketCategories=[{"categoryName": "A", "price": "12.5", "totalSeats": 4},
                                           {"categoryName": "B", "price": 0.1, "totalSeats": 4},
                                           {"categoryName": "C", "price": 0, "totalSeats": 4},
                                           {"categoryName": "D", "price": "99999999.99", "totalSeats": 4}])
    expected = ["12.50", "0.10", "0.00", "99999999.99"]
    event_id = event["idEvent"]

    def prices(e):
        return [c["price"] for c in e["ticketCategories"]]

    assert prices(event) == expected
    assert prices(http.get(f"/api/events/{event_id}").json()) == expected
    for path in ("/api/events", "/api/events/upcoming", f"/api/events/category/{category}"):
        listed = [e for e in http.get(path).json() if e["idEvent"] == event_id]
        assert len(listed) == 1, path
        assert prices(listed[0]) == expected, path
    assert [c["price"] for c in http.get(f"/api/events/{event_id}/tickets").json()] == expected


# ---- lists -------------------------------------------------------------------------------------------


def test_list_shows_active_events_only(http, org):
    kept = create_event(http, org)
    gone = create_event(http, org)
    assert http.delete(f"/api/events/{gone['idEvent']}", headers=org["headers"]).status_code == 200
    listed = http.get("/api/events")
    assert listed.status_code == 200
    ids = {e["idEvent"] for e in listed.json()}
    assert kept["idEvent"] in ids and gone["idEvent"] not in ids
    assert all(e["isActive"] for e in listed.json())
    # exactly the replaced system's fields, plus the sale settings on events that have some (other tests')
    assert all(set(e) == EVENT_KEYS or set(e) == EVENT_KEYS | SALE_KEYS for e in listed.json())


def test_upcoming_lists_future_events_only_ordered_by_date(http, org):
    later = create_event(http, org, eventDate=future(60))
    sooner = create_event(http, org, eventDate=future(2))
    gone_by = create_event(http, org, eventDate=past(1))
    r = http.get("/api/events/upcoming")
    assert r.status_code == 200
    events = r.json()
    ids = [e["idEvent"] for e in events]
    assert gone_by["idEvent"] not in ids
    assert ids.index(sooner["idEvent"]) < ids.index(later["idEvent"])
    dates = [when(e["eventDate"]) for e in events]
    assert dates == sorted(dates)
    now = datetime.now(timezone.utc)
    assert all(d > now for d in dates)
    assert gone_by["idEvent"] in {e["idEvent"] for e in http.get("/api/events").json()}  # still listed


def test_events_by_category_is_exact_and_case_sensitive(http, org):
    category = unique("Rock")
    mine = create_event(http, org, eventCategory=category)
    create_event(http, org, eventCategory=category + "x")
    create_event(http, org, eventCategory=category.upper())
    r = http.get(f"/api/events/category/{category}")
    assert r.status_code == 200
    assert [e["idEvent"] for e in r.json()] == [mine["idEvent"]]
    assert http.get(f"/api/events/category/{category[:-1]}").json() == []
    assert http.get(f"/api/events/category/{category.lower()}").json() == []


def test_events_by_category_hides_deleted_events(http, org):
    category = unique("Folk")
    event = create_event(http, org, eventCategory=category)
    http.delete(f"/api/events/{event['idEvent']}", headers=org["headers"])
    assert http.get(f"/api/events/category/{category}").json() == []


def test_events_by_category_with_spaces_and_unicode(http, org):
    category = "Música en vivo " + unique("c")
    event = create_event(http, org, eventCategory=category)
    r = http.get("/api/events/category/" + category.replace(" ", "%20"))
    assert r.status_code == 200 and [e["idEvent"] for e in r.json()] == [event["idEvent"]]


@pytest.mark.parametrize("category", ["a%00b", "x" * 101])
def test_events_by_bad_category_is_400(http, db, category):
    with unchanged(db):
        assert_error(http.get(f"/api/events/category/{category}"), 400)


# ---- by id -------------------------------------------------------------------------------------------


def test_get_event_by_id(http, org):
    event = create_event(http, org)
    r = http.get(f"/api/events/{event['idEvent']}")
    assert r.status_code == 200
    assert r.json() == event


def test_get_unknown_event_is_404(http):
    r = http.get("/api/events/2147483647")
    assert r.json() == {"statusCode": 404, "message": "Event with ID 2147483647 not found", "error": "Not Found"}


@pytest.mark.parametrize("bad", ["abc", "1.5", "0", "-1", "2147483648", "99999999999999999999", "1e3", "%20"])
def test_get_event_with_bad_id_is_400_never_500(http, db, bad):
    with unchanged(db):
        assert_error(http.get(f"/api/events/{bad}"), 400)
        assert_error(http.get(f"/api/events/{bad}/tickets"), 400)


def test_deleted_event_is_404_to_others_but_visible_to_its_creator(http, org, other, assistant):
    event = create_event(http, org)
    event_id = event["idEvent"]
    assert http.delete(f"/api/events/{event_id}", headers=org["headers"]).json() is True
    message = f"Event with ID {event_id} not found"
    assert_error(http.get(f"/api/events/{event_id}"), 404, message)
    assert_error(http.get(f"/api/events/{event_id}", headers=other["headers"]), 404, message)
    assert_error(http.get(f"/api/events/{event_id}", headers=assistant["headers"]), 404, message)
    assert_error(http.get(f"/api/events/{event_id}", headers={"Authorization": "Bearer forged"}), 404, message)
    mine = http.get(f"/api/events/{event_id}", headers=org["headers"])
    assert mine.status_code == 200 and mine.json()["isActive"] is False


# ---- update ------------------------------------------------------------------------------------------


def test_creator_updates_an_event(http, db, org):
    event = create_event(http, org)
    new_date = future(90)
    change = {"eventName": "Renamed", "eventCategory": "theatre", "description": "New text",
              "eventDate": new_date, "location": "Hall"}
    r = http.put(f"/api/events/{event['idEvent']}", json=change, headers=org["headers"])
    assert r.status_code == 200, r.text
    updated = r.json()
    assert {k: updated[k] for k in ("eventName", "eventCategory", "description", "location")} == {
        "eventName": "Renamed", "eventCategory": "theatre", "description": "New text", "location": "Hall"}
    assert when(updated["eventDate"]) == datetime.fromisoformat(new_date)
    assert when(updated["updatedAt"]) > when(event["updatedAt"])
    assert updated["createdBy"] == org["id"] and updated["ticketCategories"] == event["ticketCategories"]
    stored = row(db, "SELECT name, category, location FROM events WHERE id = :id", id=event["idEvent"])
    assert dict(stored) == {"name": "Renamed", "category": "theatre", "location": "Hall"}
    assert http.get(f"/api/events/{event['idEvent']}").json() == updated


def test_update_may_clear_optional_fields(http, org):
    event = create_event(http, org, description="text")
    r = http.put(f"/api/events/{event['idEvent']}", json={"description": None, "location": None},
                 headers=org["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["description"] is None and r.json()["location"] is None


def test_creator_can_reactivate_a_deleted_event(http, org):
    event = create_event(http, org)
    http.delete(f"/api/events/{event['idEvent']}", headers=org["headers"])
    r = http.put(f"/api/events/{event['idEvent']}", json={"isActive": True}, headers=org["headers"])
    assert r.status_code == 200 and r.json()["isActive"] is True
    assert http.get(f"/api/events/{event['idEvent']}").status_code == 200


@pytest.mark.parametrize("who", ["other", "assistant"])
def test_only_the_creator_may_update(http, db, people, who, refused_edits_target):
    event = refused_edits_target
    with unchanged(db):
        r = http.put(f"/api/events/{event['idEvent']}", json={"eventName": "Mine now"},
                     headers=people[who]["headers"])
    assert r.json() == {"statusCode": 403, "message": "You can only edit events that you created",
                        "error": "Forbidden"}


def test_others_cannot_update_a_deleted_event(http, db, org, other):
    event = create_event(http, org)
    http.delete(f"/api/events/{event['idEvent']}", headers=org["headers"])
    with unchanged(db):
        r = http.put(f"/api/events/{event['idEvent']}", json={"isActive": True}, headers=other["headers"])
    assert_error(r, 404)


def test_update_without_token_is_401(http, db, refused_edits_target):
    event = refused_edits_target
    with unchanged(db):
        assert_error(http.put(f"/api/events/{event['idEvent']}", json={"eventName": "x"}), 401)


@pytest.mark.parametrize(
    "change",
    [
        {"ticketCategories": []}, {"createdBy": 1}, {"idEvent": 1}, {"id": 1}, {"reservedSeats": 0},
        {"eventName": "ok", "unknown": 1},
    ],
    ids=["ticketCategories", "createdBy", "idEvent", "id", "reservedSeats", "unknown"],
)
def test_update_with_unknown_keys_is_400(http, db, org, refused_edits_target, change):
    event = refused_edits_target
    with unchanged(db):
        r = http.put(f"/api/events/{event['idEvent']}", json=change, headers=org["headers"])
    assert_error(r, 400)


@pytest.mark.parametrize("field", ["eventName", "eventCategory", "eventDate", "isActive"])
def test_update_required_field_to_null_is_400(http, db, org, refused_edits_target, field):
    event = refused_edits_target
    with unchanged(db):
        r = http.put(f"/api/events/{event['idEvent']}", json={field: None}, headers=org["headers"])
    assert_error(r, 400)


@pytest.mark.parametrize(
    "change",
    [{"isActive": "yes"}, {"isActive": 1}, {"eventName": ""}, {"eventName": 3}, {"eventDate": "soon"},
     {"eventCategory": "x" * 101}, [], "text"],
    ids=["string-bool", "int-bool", "empty-name", "int-name", "word-date", "long-category", "array", "string"],
)
def test_update_with_wrong_types_is_400(http, db, org, refused_edits_target, change):
    event = refused_edits_target
    with unchanged(db):
        r = http.put(f"/api/events/{event['idEvent']}", json=change, headers=org["headers"])
    assert_error(r, 400)


@pytest.mark.parametrize("bad", ["abc", "1.5", "0", "-3", "2147483648", "99999999999999999999"])
def test_update_or_delete_with_bad_id_is_400_never_500(http, db, org, bad):
    with unchanged(db):
        assert_error(http.put(f"/api/events/{bad}", json={"eventName": "x"}, headers=org["headers"]), 400)
        assert_error(http.delete(f"/api/events/{bad}", headers=org["headers"]), 400)


def test_update_or_delete_unknown_event_is_404(http, db, org):
    with unchanged(db):
        assert_error(http.put("/api/events/2147483647", json={"eventName": "x"}, headers=org["headers"]), 404,
                     "Event with ID 2147483647 not found")
        assert_error(http.delete("/api/events/2147483647", headers=org["headers"]), 404,
                     "Event with ID 2147483647 not found")


# ---- delete ------------------------------------------------------------------------------------------


def test_creator_soft_deletes_an_event(http, db, org):
    category = unique("Soft")
    event = create_event(http, org, eventCategory=category)
    event_id = event["idEvent"]
    r = http.delete(f"/api/events/{event_id}", headers=org["headers"])
    assert r.status_code == 200 and r.json() is True
    stored = row(db, "SELECT is_active FROM events WHERE id = :id", id=event_id)
    assert stored is not None and stored["is_active"] is False  # soft: the row stays
    assert scalar(db, "SELECT count(*) FROM ticket_categories WHERE event_id = :id", id=event_id) == 1
    assert_error(http.get(f"/api/events/{event_id}"), 404)
    assert_error(http.get(f"/api/events/{event_id}/tickets"), 404)
    for path in ("/api/events", "/api/events/upcoming", f"/api/events/category/{category}"):
        assert event_id not in {e["idEvent"] for e in http.get(path).json()}, path


@pytest.mark.parametrize("who", ["other", "assistant"])
def test_only_the_creator_may_delete(http, db, people, who, refused_edits_target):
    event = refused_edits_target
    with unchanged(db):
        r = http.delete(f"/api/events/{event['idEvent']}", headers=people[who]["headers"])
    assert r.json() == {"statusCode": 403, "message": "You can only delete events that you created",
                        "error": "Forbidden"}
    assert http.get(f"/api/events/{event['idEvent']}").status_code == 200


def test_delete_without_token_is_401(http, db, refused_edits_target):
    event = refused_edits_target
    with unchanged(db):
        assert_error(http.delete(f"/api/events/{event['idEvent']}"), 401, "missing token!")


# ---- ticket categories -------------------------------------------------------------------------------


def test_ticket_categories_with_available_seats(http, org):
    event = create_event(http, org, ticketCategories=[
        {"categoryName": "VIP", "price": "150", "totalSeats": 20, "description": "near"},
        {"categoryName": "Floor", "price": "45.5", "totalSeats": 300}])
    r = http.get(f"/api/events/{event['idEvent']}/tickets")
    assert r.status_code == 200
    tickets = r.json()
    assert [(t["categoryName"], t["price"], t["totalSeats"], t["reservedSeats"], t["availableSeats"])
            for t in tickets] == [("VIP", "150.00", 20, 0, 20), ("Floor", "45.50", 300, 0, 300)]
    assert all(t["eventId"] == event["idEvent"] and t["isActive"] for t in tickets)
    assert [t["id"] for t in tickets] == [c["id"] for c in event["ticketCategories"]]


def test_ticket_categories_of_unknown_event_is_404(http):
    assert_error(http.get("/api/events/2147483647/tickets"), 404, "Event with ID 2147483647 not found")


def test_ticket_categories_of_a_deleted_event_are_visible_to_its_creator_only(http, org, other):
    event = create_event(http, org)
    http.delete(f"/api/events/{event['idEvent']}", headers=org["headers"])
    assert_error(http.get(f"/api/events/{event['idEvent']}/tickets", headers=other["headers"]), 404)
    assert http.get(f"/api/events/{event['idEvent']}/tickets", headers=org["headers"]).status_code == 200
