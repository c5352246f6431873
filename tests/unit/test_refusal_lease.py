"""Refusal leases (domain.inventory.RefusalLease) on their own: when a category grants one, how long, and
that a lease's answer is always the one the category itself would give while the lease runs."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from domain.inventory import (
    ActiveHold,
    CancelRequest,
    ConfirmRequest,
    HoldRequest,
    PurchaseRequest,
    Refusal,
    ReleaseRequest,
    ReleaseSessionRequest,
    SoldOrder,
    may_free_seats,
)
from tests.unit.test_inventory import NOW, make

LONGEST = 0.05
QUANTITIES = [-1, 0, 1, 2, 10, 11, True, 2.0, "2", None]


def active_hold(user: int, quantity: int, expires_in: float = 60.0) -> ActiveHold:
    return ActiveHold(uuid.uuid4(), user, quantity, NOW - timedelta(seconds=1),
                      NOW + timedelta(seconds=expires_in))


def purchases_and_holds(users=(1, 2, 3)) -> list:
    return [kind(user, q) for kind in (PurchaseRequest, HoldRequest) for user in users for q in QUANTITIES]


def test_no_lease_while_seats_are_left_and_none_when_leases_are_off():
    inv = make(total=10, orders=[SoldOrder(1, 1, 9)])
    assert inv.refusal_lease(NOW, LONGEST) is None
    sold_out = make(total=10, orders=[SoldOrder(1, 1, 10)])
    assert sold_out.refusal_lease(NOW, 0) is None


def test_a_sold_out_category_grants_a_lease_of_at_most_the_longest():
    inv = make(total=10, orders=[SoldOrder(1, 1, 10)])
    lease = inv.refusal_lease(NOW, LONGEST)
    assert lease is not None and lease.seconds == LONGEST and lease.closed is None and lease.holders == frozenset()


def test_a_sold_out_lease_ends_before_the_next_hold_expires():
    inv = make(total=10, orders=[SoldOrder(1, 1, 8)], holds=[active_hold(2, 2, expires_in=0.02)])
    lease = inv.refusal_lease(NOW, LONGEST)
    assert lease is not None and lease.seconds == pytest.approx(0.02) and lease.holders == {2}
    # due now: the next decision expires it, so there is nothing to promise
    assert inv.refusal_lease(NOW + timedelta(seconds=0.02), LONGEST) is None


def test_a_sold_out_lease_ends_before_the_event_starts():
    inv = make(total=1, orders=[SoldOrder(1, 1, 1)], event_date=NOW + timedelta(seconds=0.01))
    assert inv.refusal_lease(NOW, LONGEST).seconds == pytest.approx(0.01)


def test_no_sold_out_lease_under_a_ticket_limit_whose_refusal_depends_on_the_buyer():
    inv = make(total=10, orders=[SoldOrder(1, 1, 10)])
    inv.info.ticket_limit = 4
    assert inv.refusal_lease(NOW, LONGEST) is None


@pytest.mark.parametrize("closed", ["event", "category", "past"])
def test_a_closed_category_leases_its_refusal_for_every_purchase_and_hold(closed):
    inv = make(total=10, event_active=closed != "event", category_active=closed != "category",
               event_date=NOW - timedelta(days=1) if closed == "past" else None,
               holds=[active_hold(1, 2, expires_in=0.001)])
    inv.info.ticket_limit = 4  # decided after the sale checks: does not matter here
    lease = inv.refusal_lease(NOW, LONGEST)
    assert lease is not None and lease.seconds == LONGEST  # a hold's expiry changes no closed answer
    assert lease.closed is (Refusal.EVENT_PAST if closed == "past" else Refusal.OFF_SALE)
    for request in purchases_and_holds():
        assert lease.answer(request) == inv.apply(request, NOW)


def sold_out_with_holds():
    """2 seats sold, 1 held by user 1 (expires in 30 s), 1 held by user 2 (expires in 10 s)."""
    first, second = active_hold(1, 1, expires_in=30), active_hold(2, 1, expires_in=10)
    return make(total=4, orders=[SoldOrder(5, 3, 2)], holds=[first, second]), first, second


def test_a_lease_answers_exactly_as_the_category_would_until_it_runs_out():
    """Every covered request, at any moment of the lease and after any decision that does not free seats
    (confirming holds included), gets the category's own answer; uncovered ones are left to it."""
    inv, first, second = sold_out_with_holds()
    lease = inv.refusal_lease(NOW, 60.0)
    assert lease.seconds == pytest.approx(10.0) and lease.holders == {1, 2}
    covered = 0
    for step, now in enumerate(NOW + timedelta(seconds=s) for s in (0, 3, 6, 9.99)):
        if step == 2:  # a confirmation: seats move from a hold into an order, none is freed
            assert inv.apply(ConfirmRequest(1, first.id), now).ok
        for request in purchases_and_holds(users=(1, 2, 3, 4)):
            leased = lease.answer(request)
            if leased is not None:
                covered += 1
                assert leased == inv.apply(request, now), (request, now)
            else:  # a holder's hold request (ALREADY_HOLDING is possible), or a bad quantity
                assert (isinstance(request, HoldRequest) and request.user_id in (1, 2)
                        or not (type(request.quantity) is int and 1 <= request.quantity <= 10))
    # purchases of 1, 2 and 10 seats by any of 4 users, holds of as many by the 2 who hold none; 4 moments
    assert covered == (4 * 3 + 2 * 3) * 4
    assert not inv.take_changes().new_holds  # nothing the lease answered was granted


def test_a_holders_hold_requests_are_left_to_the_category():
    inv, first, _ = sold_out_with_holds()
    lease = inv.refusal_lease(NOW, LONGEST)
    assert lease.answer(HoldRequest(1, 1)) is None
    assert inv.apply(HoldRequest(1, 1), NOW).refusal is Refusal.ALREADY_HOLDING  # why: not NOT_ENOUGH
    assert lease.answer(HoldRequest(3, 1)) == inv.apply(HoldRequest(3, 1), NOW)  # anyone else: NOT_ENOUGH
    assert lease.answer(HoldRequest(3, 1)).refusal is Refusal.NOT_ENOUGH_TO_HOLD


def test_requests_that_may_free_seats_are_the_ones_a_category_holds_back():
    assert may_free_seats(CancelRequest(1, 5))
    assert may_free_seats(ReleaseRequest(1))
    assert may_free_seats(ReleaseSessionRequest("socket"))
    assert not may_free_seats(PurchaseRequest(1, 1))
    assert not may_free_seats(HoldRequest(1, 1))
    assert not may_free_seats(ConfirmRequest(1, uuid.uuid4()))
    lease = make(total=1, orders=[SoldOrder(1, 1, 1)]).refusal_lease(NOW, LONGEST)
    for request in (CancelRequest(1, 1), ReleaseRequest(1), ConfirmRequest(1, uuid.uuid4())):
        assert lease.answer(request) is None
