"""Errors and bad input across the auth, users and events routes: always {statusCode, message, error},
always 4xx for a client's mistake (never 500), never an echo of the input, and nothing written."""
from __future__ import annotations

import json
from http import HTTPStatus

import pytest

from tests.helpers import create_event, future, register, unchanged, unique

ERROR_KEYS = {"statusCode", "message", "error"}


def assert_error(r, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == ERROR_KEYS
    assert body["statusCode"] == status and body["error"] == HTTPStatus(status).phrase
    assert isinstance(body["message"], (str, list))
    return body


@pytest.fixture(scope="module")
def organizer(server):
    import httpx

    with httpx.Client(base_url=server, timeout=60) as client:
        return register(client, "organizer")


@pytest.fixture(scope="module")
def event(server, organizer):
    import httpx

    with httpx.Client(base_url=server, timeout=60) as client:
        return create_event(client, organizer)


def event_body(**overrides) -> dict:
    return {"eventName": unique("E"), "eventCategory": "music", "eventDate": future(),
            "ticketCategories": [{"categoryName": "G", "price": "5.00", "totalSeats": 2}], **overrides}


def raw(http, method: str, path: str, content: bytes, headers: dict | None = None,
        content_type: str = "application/json"):
    return http.request(method, path, content=content, headers={"Content-Type": content_type, **(headers or {})})


# ---- unknown routes and methods ------------------------------------------------------------------------


def test_unknown_route_is_404_in_the_error_shape(http):
    body = assert_error(http.get("/api/nope"), 404)
    assert body["message"] == "Cannot GET /api/nope"


def test_wrong_method_is_405_in_the_error_shape(http):
    assert_error(http.patch("/api/events"), 405)
    assert_error(http.delete("/api/auth/login"), 405)


# ---- bodies that are not what the route reads --------------------------------------------------------------


@pytest.mark.parametrize("content", [b"{bad json", b"", b"null", b"[1,2]", b'"text"', b"{" * 5000 + b"}" * 5000],
                         ids=["malformed", "empty", "null", "array", "string", "deeply-nested"])
def test_register_with_a_body_that_is_not_an_object_is_400(http, db, content):
    with unchanged(db):
        assert_error(raw(http, "POST", "/api/auth/register", content), 400)
        assert_error(raw(http, "POST", "/api/auth/login", content), 400)


def test_form_encoded_body_is_400(http, db):
    with unchanged(db):
        r = raw(http, "POST", "/api/auth/register", b"username=a&password=b1234567",
                content_type="application/x-www-form-urlencoded")
    assert_error(r, 400)


@pytest.mark.parametrize("content", [b"{bad json", b"[]", b"{" * 5000 + b"}" * 5000],
                         ids=["malformed", "array", "deeply-nested"])
def test_event_writes_with_a_body_that_is_not_an_object_are_400(http, db, organizer, event, content):
    with unchanged(db):
        assert_error(raw(http, "POST", "/api/events", content, organizer["headers"]), 400)
        assert_error(raw(http, "PUT", f"/api/events/{event['idEvent']}", content, organizer["headers"]), 400)


# ---- NUL characters: PostgreSQL text cannot hold them (these answered 500) -----------------------------------


def nul_json(payload: dict) -> bytes:
    return json.dumps(payload).encode()  # json.dumps writes "\u0000", which decodes to a real NUL


@pytest.mark.parametrize(
    "path,payload",
    [
        ("/api/auth/register", {"username": "nul\u0000name", "password": "s3cret-pass"}),
        ("/api/auth/register", {"username": unique("nul"), "password": "s3cret\u0000pass"}),
        ("/api/auth/login", {"username": "nul\u0000name", "password": "s3cret-pass"}),
    ],
    ids=["register-username", "register-password", "login-username"],
)
def test_nul_in_auth_strings_is_400(http, db, path, payload):
    with unchanged(db):
        assert_error(raw(http, "POST", path, nul_json(payload)), 400)


@pytest.mark.parametrize(
    "overrides",
    [
        {"eventName": "bad\u0000name"},
        {"eventCategory": "bad\u0000category"},
        {"description": "bad\u0000text"},
        {"location": "bad\u0000place"},
        {"ticketCategories": [{"categoryName": "G\u0000", "price": "5.00", "totalSeats": 2}]},
        {"ticketCategories": [{"categoryName": "G", "price": "5.00", "totalSeats": 2, "description": "\u0000"}]},
    ],
    ids=["name", "category", "description", "location", "category-name", "category-description"],
)
def test_nul_in_event_create_is_400(http, db, organizer, overrides):
    with unchanged(db):
        assert_error(raw(http, "POST", "/api/events", nul_json(event_body(**overrides)), organizer["headers"]), 400)


@pytest.mark.parametrize("field", ["eventName", "eventCategory", "description", "location"])
def test_nul_in_event_update_is_400(http, db, organizer, event, field):
    with unchanged(db):
        r = raw(http, "PUT", f"/api/events/{event['idEvent']}", nul_json({field: "x\u0000y"}), organizer["headers"])
    assert_error(r, 400)


def test_nul_in_category_path_is_400(http):
    assert_error(http.get("/api/events/category/rock%00"), 400)


# ---- dates PostgreSQL stores but Python cannot read back (a stored one made every list answer 500) ---------


@pytest.mark.parametrize(
    "date",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00", "1899-12-31T23:59:59Z", "9999-06-01T00:00:00Z",
     "2030-01-01T00:00:00+24:00", "2030-13-01T00:00:00Z"],
    ids=["year-1-east", "year-9999-west", "before-1900", "year-9999", "offset-24h", "month-13"],
)
def test_out_of_range_event_dates_are_400_and_lists_keep_working(http, db, organizer, event, date):
    with unchanged(db):
        assert_error(http.post("/api/events", json=event_body(eventDate=date), headers=organizer["headers"]), 400)
        assert_error(http.put(f"/api/events/{event['idEvent']}", json={"eventDate": date},
                              headers=organizer["headers"]), 400)
    for path in ("/api/events", "/api/events/upcoming", f"/api/events/{event['idEvent']}"):
        assert http.get(path).status_code == 200, path


def test_naive_and_offset_dates_are_stored_in_utc(http, organizer):
    naive = create_event(http, organizer, eventDate="2031-05-01T20:00:00")
    assert naive["eventDate"] == "2031-05-01T20:00:00Z"
    shifted = create_event(http, organizer, eventDate="2031-05-01T20:00:00-05:00")
    assert shifted["eventDate"] == "2031-05-02T01:00:00Z"
    far_east = create_event(http, organizer, eventDate="2030-01-01T00:00:00+23:00")
    assert far_east["eventDate"] == "2029-12-31T01:00:00Z"


# ---- messages never echo the input -----------------------------------------------------------------------


def test_validation_messages_name_the_field_not_the_value(http, db, organizer):
    secret = "SECRET-VALUE-"
    with unchanged(db):
        r = http.post("/api/events", json=event_body(eventName=secret * 30, location=[secret]),
                      headers=organizer["headers"])
    body = assert_error(r, 400)
    assert secret not in r.text
    assert any(m.startswith("eventName") for m in body["message"])
    assert any(m.startswith("location") for m in body["message"])


# ---- every error status these routes answer, in one shape --------------------------------------------------


def test_each_error_status_has_the_standard_shape(http, db, organizer, event):
    assistant = register(http)
    with unchanged(db):
        assert_error(http.post("/api/auth/register", json={}), 400)
        assert_error(http.get("/api/user"), 401)
        assert_error(http.post("/api/events", json=event_body(), headers=assistant["headers"]), 403)
        assert_error(http.get("/api/events/2147483647"), 404)
        assert_error(http.post("/api/auth/register", json={"username": assistant["username"],
                                                           "password": "another-pass"}), 409)
