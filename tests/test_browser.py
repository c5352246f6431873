"""The live page in a real browser: Debian's headless Chromium driven by Playwright.

A user logs in on /live, picks an event, holds seats (a countdown appears), sees another buyer's
purchase (made over HTTP) change the count live, and buys with the hold. The page's layout holds on a
desktop window and on a phone, with names long enough to stretch it.
"""
from __future__ import annotations

import os
import re
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import create_event, register, scalar

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
WAIT_MS = 30_000
# Screenshots of the layout test go to this folder when it is set (to look at them).
SCREENSHOTS = os.environ.get("LIVE_SCREENSHOTS")

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


# Every element whose box reaches past the viewport's left or right edge, and the document's widths.
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const outside = [];
  for (const node of document.body.querySelectorAll("*")) {
    const r = node.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.left < -0.5 || r.right > width + 0.5) {
      const name = `${node.tagName.toLowerCase()}#${node.id}.${node.className}`;
      outside.push(`${name}: ${Math.round(r.left)}..${Math.round(r.right)}`);
    }
  }
  return { scrollWidth: document.documentElement.scrollWidth, clientWidth: width, innerWidth: window.innerWidth,
           outside };
}"""

LONG_NAME = ("The Extraordinarily Long Annual Midsummer Open-Air Festival of Symphonic, Choral and Chamber Music "
             "with Guest Orchestras from Seven Countries, Late-Night Encores and a Fireworks Finale over the River "
             "— Opening Night")
LONG_WORD = "Wolfeschlegelsteinhausenbergerdorffvortschaferswessenschafewarenwohlgepflegeundsorgfaltigkeit"


@pytest.mark.parametrize("width,height,mobile", [(1280, 800, False), (390, 844, True)], ids=["desktop", "phone"])
def test_live_page_layout_holds_with_long_names(browser, server, realtime, http, width, height, mobile):
    """A long event name (and long category and place names) must not stretch the page past the window."""
    from playwright.sync_api import expect

    org = register(http, "organizer")
    event = create_event(http, org, seats=10, eventName=f"{LONG_NAME} {LONG_WORD}"[:255],
                         location=f"Riverside Amphitheatre, {LONG_WORD}",
                         ticketCategories=[{"categoryName": f"Standing {LONG_WORD}"[:100], "price": "50.00",
                                            "totalSeats": 10}])
    event_id, category_id = event["idEvent"], event["ticketCategories"][0]["id"]
    buyer = register(http)

    context = browser.new_context(viewport={"width": width, "height": height}, is_mobile=mobile, has_touch=mobile)
    page = context.new_page()
    try:
        page.goto(f"{server}/live")
        page.fill("#username", buyer["username"])
        page.fill("#password", buyer["password"])
        page.click("#login")
        expect(page.get_by_test_id("ws-status")).to_have_text("live", timeout=WAIT_MS)
        picker = page.get_by_test_id("event-select")
        picker.select_option(str(event_id))
        expect(page.get_by_test_id(f"available-{category_id}")).to_have_text("10", timeout=WAIT_MS)
        assert_fits(page, width)

        # With a hold, the holds card shows the long category name too.
        page.get_by_test_id(f"hold-{category_id}").click()
        expect(page.get_by_test_id("countdown")).to_have_text(re.compile(r"^\d\d:\d\d$"), timeout=WAIT_MS)
        if SCREENSHOTS:
            page.screenshot(path=os.path.join(SCREENSHOTS, f"live-{width}x{height}.png"), full_page=True)
        assert_fits(page, width)
    finally:
        context.close()


VIEWPORTS = {"desktop": (1280, 800, False), "phone": (390, 844, True)}


def test_live_page_queues_then_shops_with_the_pass(browser, server, realtime, http, db):
    """An event sold through its queue, on a desktop and on a phone at once (two buyers): each page counts down
    to the sale, joins the pre-queue; the organizer then opens the sale early, and each page is pushed the
    new start, its place at the draw and its turn, then holds (with the pass) and buys. Holding is off until
    admitted."""
    from playwright.sync_api import expect

    org = register(http, "organizer")
    event = create_event(http, org, seats=10, queueEnabled=True, admissionPerMinute=600,
                         saleStartsAt=(datetime.now(timezone.utc) + timedelta(minutes=10)).isoformat())
    event_id, category_id = event["idEvent"], event["ticketCategories"][0]["id"]
    buyers = {name: register(http) for name in VIEWPORTS}
    contexts = {name: browser.new_context(viewport={"width": w, "height": h}, is_mobile=m, has_touch=m)
                for name, (w, h, m) in VIEWPORTS.items()}
    try:
        pages = {name: contexts[name].new_page() for name in VIEWPORTS}
        for name, page in pages.items():
            buyer, width = buyers[name], VIEWPORTS[name][0]
            page.goto(f"{server}/live")
            page.fill("#username", buyer["username"])
            page.fill("#password", buyer["password"])
            page.click("#login")
            expect(page.get_by_test_id("ws-status")).to_have_text("live", timeout=WAIT_MS)
            page.get_by_test_id("event-select").select_option(str(event_id))
            expect(page.get_by_test_id("queue-card")).to_be_visible(timeout=WAIT_MS)
            expect(page.get_by_test_id(f"hold-{category_id}")).to_be_disabled()  # no pass yet
            expect(page.get_by_test_id("sale-countdown")).to_have_text(re.compile(r"^Sale starts in \d\d:\d\d$"))
            page.get_by_test_id("join-queue").click()
            expect(page.get_by_test_id("queue-status")).to_have_text("Waiting", timeout=WAIT_MS)  # pre-queue
            expect(page.get_by_test_id("queue-place")).to_have_text("–")
            assert_fits(page, width)

        # The organizer opens the sale now (instead of the test waiting for it).
        r = http.put(f"/api/events/{event_id}", json={"saleStartsAt": datetime.now(timezone.utc).isoformat()},
                     headers=org["headers"])
        assert r.status_code == 200, r.text
        places = set()
        for name, page in pages.items():  # the sale opens, the pre-queue is drawn and admitted: pushed, no reload
            expect(page.get_by_test_id("queue-status")).to_have_text("Your turn: shop now", timeout=90_000)
            expect(page.get_by_test_id("sale-countdown")).to_have_text("The sale is open")
            expect(page.get_by_test_id("queue-place")).to_have_text(re.compile(r"^[12]$"))
            places.add(page.get_by_test_id("queue-place").inner_text())
            expect(page.get_by_test_id("queue-ahead")).to_have_text("0")
            expect(page.get_by_test_id("pass-remaining")).to_have_text(re.compile(r"^(10:00|09:\d\d)$"))
            expect(page.get_by_test_id(f"hold-{category_id}")).to_be_enabled()
            assert_fits(page, VIEWPORTS[name][0])
        assert places == {"1", "2"}  # the draw gave the two buyers the first two places

        for name, page in pages.items():
            page.get_by_test_id(f"qty-{category_id}").fill("2")
            page.get_by_test_id(f"hold-{category_id}").click()  # over the socket, with the pass
            expect(page.get_by_test_id("countdown")).to_have_text(re.compile(r"^\d\d:\d\d$"), timeout=WAIT_MS)
            expect(page.get_by_test_id(f"held-{category_id}")).to_have_text("2", timeout=WAIT_MS)
            page.get_by_test_id("buy").click()  # over HTTP, with the pass
            expect(page.get_by_test_id("order")).to_contain_text("confirmed", timeout=WAIT_MS)
            assert_fits(page, VIEWPORTS[name][0])
    finally:
        for context in contexts.values():
            context.close()
    for buyer in buyers.values():
        assert scalar(db, "SELECT count(*) FROM orders WHERE user_id = :u AND status = 'confirmed'", u=buyer["id"]) == 1


def assert_fits(page, width: int) -> None:
    """Nothing reaches past the window's edges, there is no horizontal scroll, and the picker is inside."""
    layout = page.evaluate(OVERFLOW_JS)
    assert layout["clientWidth"] == width, layout
    assert layout["scrollWidth"] <= width, layout
    assert layout["outside"] == [], layout
    box = page.get_by_test_id("event-select").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
