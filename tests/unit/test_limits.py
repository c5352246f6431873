"""The abuse limits' rules (domain/limits.py): token buckets, their text form, bounded memory, and the
arithmetic behind the defaults (docs/operations.md, "Abuse limits and slow clients")."""
from __future__ import annotations

import math

import pytest

from domain.limits import DEFAULT_RATES, Action, Limiter, Limits, Rate, Refused, Scope, retry_message

HOLD_SECONDS = 300  # the default hold time: seats taken in one hold time are held at once
GATEWAY_MIN_REPLICAS = 2  # serve_config.yaml; each replica keeps its own buckets


def test_rate_text_form():
    assert Rate.parse("10 + 24/hour") == Rate(10, 24 / 3600)
    assert Rate.parse("60+30/min") == Rate(60, 0.5)
    assert Rate.parse(" 5 + 1 / s ") == Rate(5, 1)
    assert Rate.parse("7") == Rate(7, 0)  # a burst that never refills
    assert Rate.parse(12) == Rate(12, 0)
    for off in ("0", "off", "OFF", 0, "0 + 5/min"):
        assert not Rate.parse(off).on, off
    for bad in ("ten", "10 + 5/week", "10 - 5/min", "-1", None, [10]):
        with pytest.raises(ValueError):
            Rate.parse(bad)
    assert str(Rate.parse("10 + 24/hour")) == "10 + 24/hour"
    assert str(Rate.parse("60 + 30/min")) == "60 + 30/min"


def test_a_burst_then_the_refill_then_retry_after_in_whole_seconds():
    limiter = Limiter(Limits(rates={(Action.LOGIN, Scope.ACCOUNT): Rate.parse("3 + 30/min")}))
    now = 1000.0
    assert [limiter.check(Action.LOGIN, now, account="ann") for _ in range(3)] == [None] * 3
    refused = limiter.check(Action.LOGIN, now, account="ann")
    assert refused == Refused(Action.LOGIN, Scope.ACCOUNT, 2)  # one token per 2 s
    assert limiter.check(Action.LOGIN, now + 0.5, account="ann").retry_after == 2  # 1.5 s → 2 (rounded up)
    assert limiter.check(Action.LOGIN, now + 1.9, account="ann").retry_after == 1  # 0.1 s → at least 1
    assert limiter.check(Action.LOGIN, now + 2.0, account="ann") is None
    assert limiter.check(Action.LOGIN, now + 2.0, account="bob") is None  # keys are independent
    assert limiter.check(Action.HOLD, now, account="ann") is None  # so are actions (hold not limited here)


def test_a_refused_request_spends_nothing_in_any_scope():
    limits = Limits(rates={(Action.HOLD, Scope.ACCOUNT): Rate.parse("1 + 1/min"),
                           (Action.HOLD, Scope.ADDRESS): Rate.parse("5 + 1/min")})
    limiter = Limiter(limits)
    assert limiter.check(Action.HOLD, 0, account="a", address="10.0.0.1") is None
    refused = limiter.check(Action.HOLD, 0, account="a", address="10.0.0.1")
    assert refused.scope is Scope.ACCOUNT and refused.retry_after == 60
    # The address spent only the granted one: four more accounts still get through.
    assert [limiter.check(Action.HOLD, 0, account=f"b{i}", address="10.0.0.1") for i in range(4)] == [None] * 4
    assert limiter.check(Action.HOLD, 0, account="c", address="10.0.0.1").scope is Scope.ADDRESS
    # The longest wait of the scopes that refuse is the one reported.
    assert limiter.check(Action.HOLD, 0, account="a", address="10.0.0.1").retry_after == 60


def test_holds_cost_one_token_per_seat_and_a_large_hold_at_most_the_burst():
    limiter = Limiter(Limits(rates={(Action.HOLD, Scope.ADDRESS): Rate.parse("10 + 6/min")}))
    assert limiter.check(Action.HOLD, 0, cost=4, address="a") is None
    assert limiter.check(Action.HOLD, 0, cost=6, address="a") is None
    assert limiter.check(Action.HOLD, 0, cost=1, address="a").retry_after == 10
    assert limiter.check(Action.HOLD, 100, cost=50, address="a") is None  # full bucket: passes once
    assert limiter.check(Action.HOLD, 100, cost=50, address="a").retry_after == 100  # refill 10 at 6/min


def test_a_cost_below_one_costs_one_and_never_refills_a_bucket():
    limiter = Limiter(Limits(rates={(Action.HOLD, Scope.ADDRESS): Rate.parse("10 + 6/min")}))
    assert limiter.check(Action.HOLD, 0, cost=10, address="a") is None
    assert limiter.check(Action.HOLD, 0, cost=-10, address="a").retry_after == 10
    assert limiter.check(Action.HOLD, 0, cost=0, address="a").retry_after == 10
    assert limiter.check(Action.HOLD, 0, cost=1, address="a").retry_after == 10


def test_off_limits_and_missing_keys_are_not_checked():
    limiter = Limiter(Limits.off())
    assert all(limiter.check(Action.HOLD, 0, cost=10, account="a", address="x") is None for _ in range(1000))
    assert limiter.buckets == {}
    limiter = Limiter()
    assert all(limiter.check(Action.HOLD, 0, account=None, address="") is None for _ in range(100))


def test_limits_from_user_config_and_environment_text():
    base = Limits()
    assert base.rates == DEFAULT_RATES
    assert base.merged(None) is base
    assert base.merged("off").rates == {} and base.merged("0").rates == {} and base.merged(False).rates == {}
    tuned = base.merged({"hold": {"address": "40 + 10/min"}, "login": "off", "register": {"account": "3"}})
    assert tuned.rate(Action.HOLD, Scope.ADDRESS) == Rate(40, 10 / 60)
    assert tuned.rate(Action.HOLD, Scope.ACCOUNT) == DEFAULT_RATES[(Action.HOLD, Scope.ACCOUNT)]  # kept
    assert not tuned.rate(Action.LOGIN, Scope.ACCOUNT).on and not tuned.rate(Action.LOGIN, Scope.ADDRESS).on
    assert tuned.rate(Action.REGISTER, Scope.ACCOUNT) == Rate(3, 0)
    text = base.merged("hold.address=40 + 10/min, login=off, max_keys=5000")
    assert text.rates == base.merged({"hold": {"address": "40 + 10/min"}, "login": "off"}).rates
    assert text.max_keys == 5000
    assert base.merged({"max_keys": 7}).max_keys == 7
    # Off first, then some on again (the test session: everything off, the abuse test turns defaults on).
    assert Limits.off().merged(base.describe()).rates == DEFAULT_RATES
    for bad in ({"holds": "1"}, {"hold": {"ip": "1"}}, {"hold": "fast"}, "hold.address", 42, {"max_keys": 0}):
        with pytest.raises(ValueError):
            base.merged(bad)


def test_memory_is_bounded_idle_full_buckets_go_and_the_least_recently_used_key_is_forgotten():
    limits = Limits(rates={(Action.LOGIN, Scope.ADDRESS): Rate.parse("2 + 1/s")}, max_keys=100)
    limiter = Limiter(limits)
    for i in range(1000):
        limiter.check(Action.LOGIN, 0, address=f"10.0.{i // 256}.{i % 256}")
        assert len(limiter.buckets) <= 100
    # A key that is used stays; one that refilled completely is dropped by the sweep.
    limiter.check(Action.LOGIN, 0, address="busy")
    limiter.check(Action.LOGIN, 0, address="busy")
    assert limiter.check(Action.LOGIN, 0, address="busy") is not None
    assert ("login", "address", "busy") in {(a.value, s.value, k) for a, s, k in limiter.buckets}
    assert limiter.sweep(0.0) == 0  # nothing has refilled yet
    held = len(limiter.buckets)
    assert limiter.sweep(10.0) == held  # 10 s later every bucket is full again
    assert limiter.buckets == {}


def test_messages():
    assert retry_message(Action.HOLD, 7) == "Too many seat holds, try again in 7 seconds"
    assert retry_message(Action.LOGIN, 1) == "Too many login attempts, try again in 1 second"


# ---- the defaults, sized: the arithmetic of docs/operations.md -----------------------------------------


def test_defaults_one_address_cannot_hold_half_of_a_50_seat_category_in_one_hold_time():
    seats = 50
    per_replica = DEFAULT_RATES[(Action.HOLD, Scope.ADDRESS)].within(HOLD_SECONDS)
    assert per_replica * GATEWAY_MIN_REPLICAS < seats / 2  # 2 × (10 + 24/h × 5 min) = 24 < 25
    # The same by simulation: 60 accounts behind one address, two replicas taking turns, every account
    # asking for the most seats it may every second for a whole hold time.
    replicas = [Limiter(), Limiter()]
    granted = 0
    for second in range(HOLD_SECONDS + 1):
        for account in range(60):
            replica = replicas[(second * 60 + account) % 2]
            if replica.check(Action.HOLD, float(second), cost=10, account=f"acct{account}",
                             address="198.51.100.7") is None:
                granted += min(10, replica.limits.rate(Action.HOLD, Scope.ADDRESS).burst)
    assert granted < seats / 2, granted


def test_defaults_an_office_of_20_buyers_behind_one_address_is_served():
    """20 colleagues on one address each hold a seat when the sale opens, and each a second one later:
    all first holds pass at once (spread over the two replicas); the second ones pass as the address
    refills, each after the Retry-After it was told. Forty seats inside one hold time from one address
    is what the 60-account client is refused: no per-address rule can tell the two apart."""
    replicas = [Limiter(), Limiter()]
    first = [replicas[i % 2].check(Action.HOLD, 0.0, cost=1, account=f"colleague{i}", address="192.0.2.1")
             for i in range(20)]
    assert first == [None] * 20
    now, waits = 0.0, []
    for i in range(20):  # the second holds, each retried after the Retry-After it gets
        replica = replicas[i % 2]
        while (refused := replica.check(Action.HOLD, now, cost=1, account=f"colleague{i}",
                                        address="192.0.2.1")) is not None:
            waits.append(refused.retry_after)
            now += refused.retry_after
    assert max(waits) <= math.ceil(1 / DEFAULT_RATES[(Action.HOLD, Scope.ADDRESS)].refill)  # ≤ 150 s each
    assert now <= 20 / (GATEWAY_MIN_REPLICAS * DEFAULT_RATES[(Action.HOLD, Scope.ADDRESS)].refill) + 150


def test_defaults_leave_room_for_people_and_stop_guessing():
    login_account = DEFAULT_RATES[(Action.LOGIN, Scope.ACCOUNT)]
    assert login_account.burst >= 5  # a person mistyping a password a few times is never told to wait
    assert login_account.within(3600) <= 400  # password guessing: at most a few hundred tries an hour
    assert DEFAULT_RATES[(Action.LOGIN, Scope.ADDRESS)].burst >= 50  # an office logging in when the sale opens
    # Registering 60 accounts from one address takes hours, not seconds.
    register = DEFAULT_RATES[(Action.REGISTER, Scope.ADDRESS)]
    assert register.burst < 60 and (60 - register.burst) / register.refill >= 3600
    # A hold of the most seats one order may take (max_per_order 10) fits every hold bucket.
    assert all(rate.burst >= 10 for (action, _), rate in DEFAULT_RATES.items() if action is Action.HOLD)
