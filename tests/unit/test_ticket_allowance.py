"""The per-account ticket limit of an event, as one category decides it (no Ray, no database).

The category actor reads each buyer's seats across the whole event (all categories) under a lock and
hands them to the inventory as an `Allowance`; these tests play that part.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from domain.inventory import (
    ActiveHold,
    Allowance,
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
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
ALICE, BOB, CAROL = 1, 2, 3


def make(total: int = 10, *, holds=(), orders=(), max_per_order: int = 10) -> CategoryInventory:
    info = CategoryInfo(event_id=7, category_id=70, event_name="Gig", category_name="General",
                        price=Decimal("12.50"), total_seats=total, event_date=NOW + timedelta(days=30),
                        event_active=True, category_active=True, ticket_limit=4)
    return CategoryInventory(info, list(holds), list(orders), hold_seconds=60, max_per_order=max_per_order)


def hold(inv, user, quantity, now=NOW):
    return inv.apply(HoldRequest(user, quantity), now)


def committed(inv) -> None:
    """Pretend the batch was written (new orders get ids), as the actor does after commit."""
    changes = inv.take_changes()
    for i, order in enumerate(changes.new_orders):
        order.id = 100 + i
    inv.committed(changes)


def seats(inv) -> tuple[int, int, int]:
    return inv.held, inv.sold, inv.available


# ---- Allowance on its own ------------------------------------------------------------------------------


def test_allowance_is_the_limit_minus_what_the_buyer_has_in_the_event():
    allowance = Allowance(4, {ALICE: 0, BOB: 3, CAROL: 4})
    assert [allowance.left(u) for u in (ALICE, BOB, CAROL)] == [4, 1, 0]
    assert allowance.fits(ALICE, 4) and not allowance.fits(ALICE, 5)
    assert allowance.fits(BOB, 1) and not allowance.fits(BOB, 2)
    assert not allowance.fits(CAROL, 1)


def test_a_lowered_limit_leaves_nothing_and_freed_seats_count_from_the_real_total():
    allowance = Allowance(2, {ALICE: 5})  # the organizer lowered the limit below what Alice has
    assert allowance.left(ALICE) == 0
    allowance.give_back(ALICE, 2)  # 3 left: still above the limit
    assert allowance.left(ALICE) == 0
    allowance.give_back(ALICE, 2)  # 1 left
    assert allowance.left(ALICE) == 1


def test_taking_and_giving_back_move_the_allowance():
    allowance = Allowance(4, {ALICE: 1})
    allowance.take(ALICE, 2)
    assert allowance.left(ALICE) == 1
    allowance.give_back(ALICE, 3)
    assert allowance.left(ALICE) == 4


def test_a_buyer_whose_count_was_not_read_is_never_let_through():
    with pytest.raises(KeyError):
        Allowance(4, {ALICE: 0}).fits(BOB, 1)


def test_giving_back_to_a_buyer_outside_the_batch_is_ignored():
    allowance = Allowance(4, {ALICE: 0})
    allowance.give_back(BOB, 2)  # an expiry of someone who asks nothing in this batch
    assert allowance.tickets == {ALICE: 0}


# ---- the inventory with an allowance --------------------------------------------------------------------


def test_holds_and_purchases_stop_at_the_limit_across_the_batch():
    inv = make(total=20)
    inv.allow(Allowance(4, {ALICE: 1, BOB: 0}))  # Alice holds 1 seat in another category
    assert hold(inv, ALICE, 2).ok
    out = inv.apply(PurchaseRequest(ALICE, 2), NOW)
    assert out.refusal is Refusal.TICKET_LIMIT and out.limit == 4 and out.available == 18
    assert inv.apply(PurchaseRequest(ALICE, 1), NOW).ok  # 1 + 2 + 1 = 4
    assert inv.apply(PurchaseRequest(ALICE, 1), NOW).refusal is Refusal.TICKET_LIMIT
    assert inv.apply(PurchaseRequest(BOB, 4), NOW).ok
    assert seats(inv) == (2, 5, 13)
    changes = inv.take_changes()
    assert [(o.user_id, o.quantity) for o in changes.new_orders] == [(ALICE, 1), (BOB, 4)]


def test_a_refused_hold_changes_nothing():
    inv = make(total=10)
    inv.allow(Allowance(3, {ALICE: 2}))
    out = hold(inv, ALICE, 2)
    assert out.refusal is Refusal.TICKET_LIMIT and out.limit == 3
    assert seats(inv) == (0, 0, 10) and ALICE not in inv.hold_of_user
    assert not inv.take_changes()


def test_the_limit_is_told_before_the_seats_left():
    """A buyer over the limit learns the limit (stable) rather than the seats left (which move)."""
    inv = make(total=1)
    inv.allow(Allowance(2, {ALICE: 0}))
    assert hold(inv, ALICE, 3).refusal is Refusal.TICKET_LIMIT
    assert hold(inv, ALICE, 2).refusal is Refusal.NOT_ENOUGH_TO_HOLD


def test_the_other_refusals_come_first():
    inv = make(total=10, max_per_order=5)
    inv.allow(Allowance(2, {ALICE: 0}))
    assert hold(inv, ALICE, 6).refusal is Refusal.BAD_QUANTITY
    assert hold(inv, ALICE, 1).ok
    assert hold(inv, ALICE, 3).refusal is Refusal.ALREADY_HOLDING


def test_confirming_a_hold_takes_nothing_more():
    """The hold's seats were counted when it was made; its order moves them, it does not add them."""
    inv = make(total=10)
    inv.allow(Allowance(4, {ALICE: 0}))
    h = hold(inv, ALICE, 4).hold
    committed(inv)
    inv.allow(Allowance(4, {ALICE: 4}))  # the next batch reads Alice's 4 held seats
    out = inv.apply(ConfirmRequest(ALICE, h.id, 4), NOW)
    assert out.ok and out.order.quantity == 4
    assert inv.allowance.left(ALICE) == 0  # not given back: the seats are now the order's


@pytest.mark.parametrize("free", ["release", "session", "cancel", "expiry"])
def test_seats_freed_earlier_in_the_batch_can_be_taken_again(free):
    held = ActiveHold(uuid.uuid4(), ALICE, 3, NOW - timedelta(minutes=5), NOW + timedelta(minutes=5), "sock")
    inv = make(total=10, holds=[held], orders=[SoldOrder(5, ALICE, 1)])
    later = NOW + timedelta(minutes=10) if free == "expiry" else NOW
    inv.allow(Allowance(4, {ALICE: 4}))  # 3 held + 1 bought
    assert inv.apply(PurchaseRequest(ALICE, 1), later).refusal is Refusal.TICKET_LIMIT
    if free == "release":
        assert inv.apply(ReleaseRequest(ALICE, held.id), later).ok
    elif free == "session":
        assert inv.apply(ReleaseSessionRequest("sock"), later).ok
    elif free == "cancel":
        assert inv.apply(CancelRequest(ALICE, 5), later).ok
    else:
        assert inv.expire_due(later) == 3
    left = 1 if free == "cancel" else 3
    assert inv.allowance.left(ALICE) == left
    assert inv.apply(PurchaseRequest(ALICE, left + 1), later).refusal is Refusal.TICKET_LIMIT
    assert inv.apply(PurchaseRequest(ALICE, left), later).ok


def test_without_an_allowance_there_is_no_limit():
    inv = make(total=20)
    assert inv.allowance is None
    assert hold(inv, ALICE, 10).ok
    assert inv.apply(PurchaseRequest(ALICE, 10), NOW).ok


def test_the_allowance_ends_with_the_batch():
    """It is valid only while the counts are locked: the next batch must read them again."""
    inv = make(total=20)
    inv.allow(Allowance(1, {ALICE: 0}))
    assert hold(inv, ALICE, 1).ok
    inv.take_changes()
    assert inv.allowance is None


def test_buyers_touched_are_callers_session_owners_and_expiring_holders():
    due = ActiveHold(uuid.uuid4(), CAROL, 1, NOW - timedelta(minutes=5), NOW)
    session = ActiveHold(uuid.uuid4(), BOB, 1, NOW, NOW + timedelta(minutes=5), "sock")
    other = ActiveHold(uuid.uuid4(), 99, 1, NOW, NOW + timedelta(minutes=5), "other")
    inv = make(holds=[due, session, other])
    requests = [HoldRequest(ALICE, 1), ReleaseSessionRequest("sock"), CancelRequest(42, 7),
                ConfirmRequest(43, uuid.uuid4()), ReleaseRequest(44), PurchaseRequest(45, 1)]
    assert inv.buyers_touched(requests, NOW) == {ALICE, BOB, CAROL, 42, 43, 44, 45}
    assert inv.buyers_touched([], NOW - timedelta(minutes=1)) == set()
