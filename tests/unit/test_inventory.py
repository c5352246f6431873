"""CategoryInventory on its own: the seat rules, without Ray or a database."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from domain.inventory import (
    ActiveHold,
    CancelRequest,
    CategoryInfo,
    CategoryInventory,
    ConfirmRequest,
    HoldRequest,
    PurchaseRequest,
    Refusal,
    ReleaseRequest,
    ReleaseSessionRequest,
    SoldOrder,
    idle_exit_after,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
ALICE, BOB, CAROL = 1, 2, 3


def make(total: int = 10, *, holds=(), orders=(), hold_seconds: float = 60, max_per_order: int = 10,
         event_active: bool = True, category_active: bool = True, event_date: datetime | None = None):
    info = CategoryInfo(
        event_id=7, category_id=70, event_name="Gig", category_name="General", price=Decimal("12.50"),
        total_seats=total, event_date=event_date or NOW + timedelta(days=30),
        event_active=event_active, category_active=category_active,
    )
    return CategoryInventory(info, list(holds), list(orders), hold_seconds=hold_seconds,
                             max_per_order=max_per_order)


def hold(inv, user, quantity, now=NOW, session=None):
    return inv.apply(HoldRequest(user, quantity, session), now)


def committed(inv, first_id: int = 100):
    """Pretend the batch was written: give new orders ids, as the actor does after commit."""
    changes = inv.take_changes()
    for i, order in enumerate(changes.new_orders):
        order.id = first_id + i
    inv.committed(changes)
    return changes


def seats(inv) -> tuple[int, int, int]:
    return inv.held, inv.sold, inv.available


# ---- holds ----------------------------------------------------------------------------------------


def test_holds_are_granted_until_capacity_then_refused():
    inv = make(total=5)
    assert hold(inv, ALICE, 3).ok
    assert hold(inv, BOB, 2).ok
    assert seats(inv) == (5, 0, 0)
    out = hold(inv, CAROL, 1)
    assert out.refusal is Refusal.NOT_ENOUGH_TO_HOLD and out.available == 0
    assert seats(inv) == (5, 0, 0)


def test_hold_larger_than_what_is_left_is_refused_and_changes_nothing():
    inv = make(total=5)
    hold(inv, ALICE, 4)
    out = hold(inv, BOB, 2)
    assert not out.ok and out.available == 1
    assert seats(inv) == (4, 0, 1) and len(inv.holds) == 1


def test_hold_expiry_time_comes_from_hold_seconds():
    out = hold(make(hold_seconds=90), ALICE, 1)
    assert out.hold.expires_at == NOW + timedelta(seconds=90)


@pytest.mark.parametrize("quantity", [0, -1, -5, 11, 1000, "2", 2.0, None, True])
def test_quantity_out_of_range_or_not_an_int_is_refused(quantity):
    inv = make(total=100)
    out = hold(inv, ALICE, quantity)
    assert out.refusal is Refusal.BAD_QUANTITY and out.limit == 10
    assert seats(inv) == (0, 0, 100)
    out = inv.apply(PurchaseRequest(ALICE, quantity), NOW)
    assert out.refusal is Refusal.BAD_QUANTITY
    assert seats(inv) == (0, 0, 100) and not inv.take_changes()


def test_per_order_maximum_is_configurable():
    inv = make(total=100, max_per_order=4)
    assert not hold(inv, ALICE, 5).ok
    assert hold(inv, ALICE, 4).ok
    assert not inv.apply(PurchaseRequest(BOB, 5), NOW).ok


def test_one_active_hold_per_user():
    inv = make()
    assert hold(inv, ALICE, 1).ok
    out = hold(inv, ALICE, 1)
    assert out.refusal is Refusal.ALREADY_HOLDING
    assert seats(inv) == (1, 0, 9)


def test_user_may_hold_again_after_releasing():
    inv = make()
    first = hold(inv, ALICE, 2).hold
    assert inv.apply(ReleaseRequest(ALICE, first.id), NOW).ok
    assert hold(inv, ALICE, 3).ok
    assert seats(inv) == (3, 0, 7)


# ---- release -----------------------------------------------------------------------------------------


def test_release_only_by_owner():
    inv = make()
    h = hold(inv, ALICE, 3).hold
    committed(inv)
    out = inv.apply(ReleaseRequest(BOB, h.id), NOW)
    assert out.refusal is Refusal.NO_HOLD_TO_RELEASE
    assert not inv.apply(ReleaseRequest(BOB), NOW).ok  # "my hold in this category": Bob has none
    assert seats(inv) == (3, 0, 7) and not inv.take_changes()
    out = inv.apply(ReleaseRequest(ALICE, h.id), NOW)
    assert out.ok and out.released == 3
    assert seats(inv) == (0, 0, 10)
    assert inv.take_changes().hold_status == {h.id: "released"}


def test_release_without_hold_id_releases_the_callers_hold():
    inv = make()
    hold(inv, ALICE, 2)
    b = hold(inv, BOB, 3).hold
    committed(inv)
    out = inv.apply(ReleaseRequest(BOB), NOW)
    assert out.ok and out.released == 3 and out.hold.id == b.id
    assert seats(inv) == (2, 0, 8)


def test_release_twice_frees_seats_once():
    inv = make()
    h = hold(inv, ALICE, 4).hold
    assert inv.apply(ReleaseRequest(ALICE, h.id), NOW).ok
    assert not inv.apply(ReleaseRequest(ALICE, h.id), NOW).ok
    assert seats(inv) == (0, 0, 10)


# ---- confirm -----------------------------------------------------------------------------------------


def test_confirm_turns_the_hold_into_an_order():
    inv = make()
    h = hold(inv, ALICE, 2).hold
    committed(inv)
    out = inv.apply(ConfirmRequest(ALICE, h.id, 2, "note", "key-1"), NOW)
    assert out.ok and out.order is not None
    assert out.order.quantity == 2 and out.order.hold_id == h.id and out.order.total_price == Decimal("25.00")
    assert out.order.idempotency_key == "key-1" and out.order.notes == "note"
    assert seats(inv) == (0, 2, 8)
    changes = committed(inv)
    assert changes.hold_status == {h.id: "confirmed"} and len(changes.new_orders) == 1
    assert list(inv.orders) == [100]


def test_confirm_only_by_owner():
    inv = make()
    h = hold(inv, ALICE, 2).hold
    out = inv.apply(ConfirmRequest(BOB, h.id, 2), NOW)
    assert out.refusal is Refusal.INVALID_HOLD
    assert seats(inv) == (2, 0, 8) and h.id in inv.holds


def test_confirm_unknown_hold_is_refused():
    inv = make()
    out = inv.apply(ConfirmRequest(ALICE, uuid.uuid4()), NOW)
    assert out.refusal is Refusal.INVALID_HOLD


def test_confirm_after_expiry_is_refused_and_frees_the_seats():
    inv = make(hold_seconds=60)
    h = hold(inv, ALICE, 2).hold
    committed(inv)
    out = inv.apply(ConfirmRequest(ALICE, h.id, 2), NOW + timedelta(seconds=60))
    assert out.refusal is Refusal.INVALID_HOLD
    assert seats(inv) == (0, 0, 10)
    assert inv.take_changes().hold_status == {h.id: "expired"}


def test_confirm_at_most_once():
    inv = make()
    h = hold(inv, ALICE, 2).hold
    assert inv.apply(ConfirmRequest(ALICE, h.id, 2), NOW).ok
    out = inv.apply(ConfirmRequest(ALICE, h.id, 2), NOW)
    assert out.refusal is Refusal.INVALID_HOLD
    assert seats(inv) == (0, 2, 8) and len(inv.take_changes().new_orders) == 1


@pytest.mark.parametrize("quantity", [1, 3, 100, "2"])
def test_confirm_quantity_must_match_the_hold(quantity):
    inv = make()
    h = hold(inv, ALICE, 2).hold
    out = inv.apply(ConfirmRequest(ALICE, h.id, quantity), NOW)
    assert out.refusal is Refusal.QUANTITY_MISMATCH and out.limit == 2
    assert seats(inv) == (2, 0, 8) and h.id in inv.holds  # the hold is kept; the right order may follow
    assert inv.apply(ConfirmRequest(ALICE, h.id, 2), NOW).ok


def test_confirm_refused_once_the_event_is_deactivated():
    inv = make()
    h = hold(inv, ALICE, 2).hold
    inv.info.event_active = False
    out = inv.apply(ConfirmRequest(ALICE, h.id, 2), NOW)
    assert out.refusal is Refusal.OFF_SALE
    assert seats(inv) == (2, 0, 8)


# ---- purchase ----------------------------------------------------------------------------------------


def test_purchase_cannot_take_held_seats():
    inv = make(total=5)
    hold(inv, ALICE, 4)
    out = inv.apply(PurchaseRequest(BOB, 2), NOW)
    assert out.refusal is Refusal.NOT_ENOUGH_TO_BUY and out.available == 1
    assert inv.apply(PurchaseRequest(BOB, 1), NOW).ok
    assert seats(inv) == (4, 1, 0)
    assert not inv.apply(PurchaseRequest(CAROL, 1), NOW).ok


def test_purchases_stop_at_capacity():
    inv = make(total=7)
    results = [inv.apply(PurchaseRequest(u, 2), NOW).ok for u in range(10)]
    assert results == [True, True, True, False, False, False, False, False, False, False]
    assert inv.apply(PurchaseRequest(99, 1), NOW).ok
    assert seats(inv) == (0, 7, 0)


# ---- cancel ------------------------------------------------------------------------------------------


def test_cancel_once_only_by_owner():
    inv = make(orders=[SoldOrder(5, ALICE, 3)])
    assert seats(inv) == (0, 3, 7)
    out = inv.apply(CancelRequest(BOB, 5), NOW)
    assert out.refusal is Refusal.NOT_YOUR_ORDER
    assert seats(inv) == (0, 3, 7)
    out = inv.apply(CancelRequest(ALICE, 5), NOW)
    assert out.ok and out.released == 3
    assert seats(inv) == (0, 0, 10)
    out = inv.apply(CancelRequest(ALICE, 5), NOW)
    assert out.refusal is Refusal.NOT_CANCELLABLE
    assert seats(inv) == (0, 0, 10)
    assert [o.id for o in inv.take_changes().cancelled_orders] == [5]


def test_an_order_cannot_be_cancelled_once_its_event_has_taken_place():
    inv = make(orders=[SoldOrder(5, ALICE, 3)], event_date=NOW)
    assert inv.apply(CancelRequest(ALICE, 5), NOW).refusal is Refusal.EVENT_PAST
    assert seats(inv) == (0, 3, 7) and not inv.take_changes().cancelled_orders
    assert inv.apply(CancelRequest(BOB, 5), NOW).refusal is Refusal.NOT_YOUR_ORDER  # owner checked first


def test_cancel_of_unknown_order_is_refused():
    inv = make()
    assert not inv.apply(CancelRequest(ALICE, 12345), NOW).ok
    assert seats(inv) == (0, 0, 10)


def test_cancelled_seats_can_be_sold_again():
    inv = make(total=2, orders=[SoldOrder(5, ALICE, 2)])
    assert not inv.apply(PurchaseRequest(BOB, 1), NOW).ok
    inv.apply(CancelRequest(ALICE, 5), NOW)
    assert inv.apply(PurchaseRequest(BOB, 2), NOW).ok


# ---- expiry ------------------------------------------------------------------------------------------


def test_expiry_frees_seats():
    inv = make(total=5, hold_seconds=60)
    a = hold(inv, ALICE, 2).hold
    b = hold(inv, BOB, 3, now=NOW + timedelta(seconds=30)).hold
    committed(inv)
    assert inv.next_expiry() == a.expires_at
    assert inv.expire_due(NOW + timedelta(seconds=59)) == 0
    assert inv.expire_due(NOW + timedelta(seconds=60)) == 2
    assert seats(inv) == (3, 0, 2) and inv.next_expiry() == b.expires_at
    assert inv.take_changes().hold_status == {a.id: "expired"}
    assert inv.expire_due(NOW + timedelta(seconds=91)) == 3
    assert inv.next_expiry() is None and seats(inv) == (0, 0, 5)


def test_next_expiry_skips_holds_that_were_already_closed():
    inv = make(hold_seconds=60)
    a = hold(inv, ALICE, 1).hold
    b = hold(inv, BOB, 1, now=NOW + timedelta(seconds=10)).hold
    inv.apply(ReleaseRequest(ALICE, a.id), NOW)
    assert inv.next_expiry() == b.expires_at
    assert inv.expire_due(NOW + timedelta(seconds=65)) == 0  # a is gone, b not yet due


def test_holds_loaded_already_expired_are_expired_first():
    """After a restart, holds whose time passed while the actor was down are freed at once."""
    stale = ActiveHold(uuid.uuid4(), ALICE, 4, NOW - timedelta(minutes=10), NOW - timedelta(minutes=5))
    fresh = ActiveHold(uuid.uuid4(), BOB, 1, NOW, NOW + timedelta(minutes=5))
    inv = make(total=5, holds=[stale, fresh])
    assert seats(inv) == (5, 0, 0)
    assert inv.expire_due(NOW) == 4
    assert seats(inv) == (1, 0, 4) and inv.take_changes().hold_status == {stale.id: "expired"}
    assert hold(inv, ALICE, 4).ok  # Alice's old hold no longer blocks her


def test_expired_hold_frees_its_user():
    inv = make(hold_seconds=1)
    hold(inv, ALICE, 1)
    later = NOW + timedelta(seconds=2)
    inv.expire_due(later)
    assert hold(inv, ALICE, 1, now=later).ok


# ---- batches -----------------------------------------------------------------------------------------


def test_hold_then_release_by_session_in_one_batch_writes_the_hold_closed():
    inv = make()
    h = hold(inv, ALICE, 2, session="sock-1").hold
    other = hold(inv, BOB, 1, session="sock-2").hold
    out = inv.apply(ReleaseSessionRequest("sock-1"), NOW)
    assert out.ok and out.released == 2
    changes = inv.take_changes()
    assert changes.new_holds[h.id][1] == "released"
    assert changes.new_holds[other.id][1] == "active"
    assert changes.hold_status == {}  # never an UPDATE of a row that does not exist yet
    assert seats(inv) == (1, 0, 9)


def test_hold_then_confirm_in_one_batch_inserts_a_confirmed_hold():
    inv = make()
    h = hold(inv, ALICE, 2).hold
    inv.apply(ConfirmRequest(ALICE, h.id, 2), NOW)
    changes = inv.take_changes()
    assert changes.new_holds[h.id][1] == "confirmed" and changes.hold_status == {}
    assert changes.new_orders[0].hold_id == h.id


def test_committed_remembers_orders_so_they_can_be_cancelled():
    inv = make()
    inv.apply(PurchaseRequest(ALICE, 2), NOW)
    assert not inv.apply(CancelRequest(ALICE, 100), NOW).ok  # no id before commit
    committed(inv, first_id=100)
    assert inv.apply(CancelRequest(ALICE, 100), NOW).ok
    assert seats(inv) == (0, 0, 10)


def test_take_changes_is_empty_after_refusals_only():
    inv = make(total=1)
    hold(inv, ALICE, 1)
    inv.take_changes()
    hold(inv, BOB, 1)
    inv.apply(PurchaseRequest(BOB, 1), NOW)
    inv.apply(ReleaseRequest(BOB), NOW)
    assert not inv.take_changes()


# ---- events that no longer sell -------------------------------------------------------------------


@pytest.mark.parametrize("field", ["event_active", "category_active"])
def test_deactivated_event_or_category_refuses(field):
    inv = make(**{field: False})
    out = hold(inv, ALICE, 1)
    assert out.refusal is Refusal.OFF_SALE
    assert not inv.apply(PurchaseRequest(ALICE, 1), NOW).ok
    assert seats(inv) == (0, 0, 10)


def test_past_event_refuses():
    inv = make(event_date=NOW - timedelta(hours=1))
    out = hold(inv, ALICE, 1)
    assert out.refusal is Refusal.EVENT_PAST
    out = inv.apply(PurchaseRequest(ALICE, 1), NOW)
    assert out.refusal is Refusal.EVENT_PAST
    assert seats(inv) == (0, 0, 10)


def test_deactivated_event_still_lets_owners_release_and_cancel():
    inv = make(orders=[SoldOrder(5, ALICE, 1)])
    h = hold(inv, BOB, 2).hold
    inv.info.event_active = False
    assert inv.apply(ReleaseRequest(BOB, h.id), NOW).ok
    assert inv.apply(CancelRequest(ALICE, 5), NOW).ok
    assert seats(inv) == (0, 0, 10)


@pytest.mark.parametrize("kwargs, selling", [
    ({}, True),
    ({"total": 0}, True),  # sold out still sells: a cancellation frees a seat for the next buyer
    ({"event_active": False}, False),
    ({"category_active": False}, False),
    ({"event_date": NOW - timedelta(seconds=1)}, False),
])
def test_a_category_is_selling_unless_off_sale_or_past(kwargs, selling):
    assert make(**kwargs).selling(NOW) is selling


@pytest.mark.parametrize("idle_exit_s, closed_exit_s, selling, expected", [
    (0, 60, True, None),  # the production default: a category on sale stays warm
    (0, 60, False, 60),  # one that can no longer sell ends after a minute idle
    (20, 60, False, 20),  # whichever comes first
    (20, 5, False, 5),
    (20, 5, True, 20),
    (0, 0, False, None),  # both off
])
def test_an_idle_actor_exits_after_the_first_wait_that_applies(idle_exit_s, closed_exit_s, selling, expected):
    assert idle_exit_after(idle_exit_s, closed_exit_s, selling=selling) == expected


def test_figures_report_the_state():
    inv = make(total=10, orders=[SoldOrder(5, ALICE, 3)])
    hold(inv, BOB, 2)
    assert inv.figures() == {
        "eventId": 7, "categoryId": 70, "categoryName": "General", "totalSeats": 10, "soldSeats": 3,
        "heldSeats": 2, "availableSeats": 5, "activeHolds": 1, "onSale": True,
    }
