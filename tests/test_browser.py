"""The live page in a real browser: Debian's headless Chromium driven by Playwright.

A user logs in on /live, picks an event, holds seats (a countdown appears), sees another buyer's
purchase (made over HTTP) change the count live, and buys with the hold.
"""
from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.helpers import create_event, register

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
WAIT_MS = 30_000

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (.ci/run installs it)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def test_live_page_hold_watch_and_buy(browser, server, realtime, http, tmp_path):
    from playwright.sync_api import expect

    org = register(http, "organizer")
    event = create_event(http, org, seats=10)
    event_id, category_id = event["idEvent"], event["ticketCategories"][0]["id"]
    buyer, rival = register(http), register(http)

    page = browser.new_page()
    try:
        page.goto(f"{server}/live")
        page.fill("#username", buyer["username"])
        page.fill("#password", buyer["password"])
        page.click("#login")
        expect(page.get_by_test_id("ws-status")).to_have_text("live", timeout=WAIT_MS)
        page.get_by_test_id("event-select").select_option(str(event_id))
        available = page.get_by_test_id(f"available-{category_id}")
        expect(available).to_have_text("10", timeout=WAIT_MS)

        # Hold 2 seats: the hold appears with a running countdown, and the count drops for everyone.
        page.get_by_test_id(f"qty-{category_id}").fill("2")
        page.get_by_test_id(f"hold-{category_id}").click()
        expect(page.get_by_test_id("countdown")).to_have_text(re.compile(r"^\d\d:\d\d$"), timeout=WAIT_MS)
        expect(available).to_have_text("8", timeout=WAIT_MS)
        expect(page.get_by_test_id(f"held-{category_id}")).to_have_text("2", timeout=WAIT_MS)

        # Someone else buys 3 over HTTP: the page shows it without a reload.
        r = http.post("/api/orders", json={"eventId": event_id, "categoryId": category_id, "quantity": 3},
                      headers=rival["headers"])
        assert r.status_code == 201, r.text
        expect(available).to_have_text("5", timeout=WAIT_MS)
        expect(page.get_by_test_id(f"sold-{category_id}")).to_have_text("3", timeout=WAIT_MS)
        page.screenshot(path=str(tmp_path / "live-held.png"), full_page=True)

        # Buy with the hold.
        page.get_by_test_id("buy").click()
        order = page.get_by_test_id("order")
        expect(order).to_contain_text("confirmed", timeout=WAIT_MS)
        expect(page.get_by_test_id(f"sold-{category_id}")).to_have_text("5", timeout=WAIT_MS)
        expect(page.get_by_test_id(f"held-{category_id}")).to_have_text("0", timeout=WAIT_MS)
        expect(available).to_have_text("5", timeout=WAIT_MS)
        expect(page.get_by_test_id("log")).to_contain_text("completed", timeout=WAIT_MS)  # order-completed notice
        order_id = order.get_attribute("data-order-id")
    finally:
        if os.environ.get("LIVE_SCREENSHOT"):
            page.screenshot(path=os.environ["LIVE_SCREENSHOT"], full_page=True)
        page.close()

    orders = http.get("/api/orders", headers=buyer["headers"]).json()
    assert [(o["id"], o["quantity"], o["status"]) for o in orders] == [(order_id, 2, "confirmed")]
    assert orders[0]["lockId"] is not None


def test_live_page_refuses_a_bad_login(browser, server, realtime):
    from playwright.sync_api import expect

    page = browser.new_page()
    try:
        page.goto(f"{server}/live")
        page.fill("#username", "nobody-here")
        page.fill("#password", "wrong-password")
        page.click("#login")
        expect(page.get_by_test_id("login-error")).not_to_be_empty(timeout=WAIT_MS)
        expect(page.get_by_test_id("ws-status")).to_have_text("offline")
    finally:
        page.close()
