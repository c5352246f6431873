"""The waiting room's rules without Ray or a database: the draw, the admission meter, position and wait,
sale settings and passes."""
from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from domain.errors import BadRequest, Forbidden
from domain.passes import check_may_shop, check_pass, issue_pass
from domain.queue import (
    AdmissionMeter,
    QueueFigures,
    counted_shoppers,
    draw,
    estimated_wait_seconds,
    people_ahead,
)
from domain.sale import SaleSettings, check_sale_settings

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
SECRET = "unit-test-secret-unit-test-secret-0123"


def figures(**overrides) -> QueueFigures:
    base = dict(event_id=1, enabled=True, drawn=True, paused=False, sale_starts_at=None, pre_queue=0, waiting=0,
                admitted=0, shopping=0, admitted_last_minute=0, admission_per_minute=None, max_shoppers=None)
    return QueueFigures(**{**base, **overrides})


# ---- the draw ------------------------------------------------------------------------------------------


def test_the_draw_is_a_permutation_of_the_pre_queue():
    users = list(range(100))
    order = draw(users)
    assert sorted(order) == users and users == list(range(100))  # the input is not changed


def test_every_place_is_equally_likely_whatever_the_arrival():
    """Chi-square over 6,000 draws of 6 buyers: where the first arrival ends up is uniform."""
    rng = random.Random(7)
    seen = Counter(draw(list(range(6)), rng).index(0) for _ in range(6000))
    expected = 1000
    chi2 = sum((seen[i] - expected) ** 2 / expected for i in range(6))
    assert chi2 < 20.5  # 5 degrees of freedom: p < 0.001 to fail by chance


# ---- admission -----------------------------------------------------------------------------------------


def test_rate_admits_per_minute_over_time_without_bursting_after_a_quiet_spell():
    meter = AdmissionMeter()
    admitted = 0
    for second in range(600):  # ten minutes, one tick a second, always someone waiting
        n = meter.due(float(second), waiting=10_000, shopping=0, per_minute=600, cap=None, paused=False)
        meter.spend(n, 600)
        admitted += n
    assert abs(admitted - 6000) <= 10
    # nobody waiting for a minute, then a crowd: at most the burst (5 s worth) at once
    for second in range(600, 660):
        meter.due(float(second), waiting=0, shopping=0, per_minute=600, cap=None, paused=False)
    assert meter.due(661.0, waiting=10_000, shopping=0, per_minute=600, cap=None, paused=False) <= 51


def test_slow_rates_admit_one_at_a_time():
    meter = AdmissionMeter()
    total = 0
    for second in range(120):
        n = meter.due(float(second), waiting=100, shopping=0, per_minute=30, cap=None, paused=False)
        meter.spend(n, 30)
        assert n <= 1
        total += n
    assert 58 <= total <= 60


def test_cap_counts_shoppers_and_pause_stops_everything():
    meter = AdmissionMeter()
    assert meter.due(0.0, waiting=50, shopping=7, per_minute=None, cap=10, paused=False) == 3
    assert meter.due(1.0, waiting=2, shopping=0, per_minute=None, cap=10, paused=False) == 2
    assert meter.due(2.0, waiting=50, shopping=12, per_minute=None, cap=10, paused=False) == 0
    assert meter.due(3.0, waiting=50, shopping=0, per_minute=None, cap=10, paused=True) == 0


def test_the_cap_counts_passes_in_force_whose_buyer_has_not_bought():
    passes = {1: NOW, 2: NOW, 3: NOW}
    assert counted_shoppers(passes, set()) == 3
    assert counted_shoppers(passes, {2}) == 2
    assert counted_shoppers(passes, {2, 9}) == 2  # a buyer without a pass in force counts for nothing
    assert counted_shoppers({}, {1}) == 0


def test_rate_and_cap_together_take_the_smaller():
    meter = AdmissionMeter()
    meter.due(0.0, waiting=100, shopping=0, per_minute=6000, cap=5, paused=False)
    assert meter.due(1.0, waiting=100, shopping=3, per_minute=6000, cap=5, paused=False) == 2


# ---- position and wait ---------------------------------------------------------------------------------


def test_people_ahead_follow_admissions():
    assert people_ahead(10, admitted=0) == 9
    assert people_ahead(10, admitted=4) == 5
    assert people_ahead(10, admitted=9) == 0
    assert people_ahead(10, admitted=50) == 0


def test_estimated_wait_uses_the_rate_or_what_was_seen():
    assert estimated_wait_seconds(120, figures(admission_per_minute=60)) == 120.0
    assert estimated_wait_seconds(30, figures(max_shoppers=10, admitted_last_minute=15)) == 120.0
    assert estimated_wait_seconds(30, figures(max_shoppers=10)) is None  # nothing seen yet
    assert estimated_wait_seconds(0, figures(max_shoppers=10)) == 0.0
    assert estimated_wait_seconds(30, figures(admission_per_minute=60, paused=True)) is None
    # a cap that lets fewer in than the rate: the slower figure
    assert estimated_wait_seconds(60, figures(admission_per_minute=600, admitted_last_minute=60)) == 60.0


# ---- sale settings and passes --------------------------------------------------------------------------


def test_a_queue_needs_a_way_in():
    with pytest.raises(BadRequest):
        check_sale_settings(SaleSettings(queue_enabled=True))
    check_sale_settings(SaleSettings(queue_enabled=True, max_shoppers=5))
    check_sale_settings(SaleSettings())


def test_a_pass_is_for_one_account_one_event_until_it_expires():
    token = issue_pass(7, 3, datetime.now(timezone.utc) + timedelta(minutes=10), SECRET)  # checked on the real clock
    check_pass(token, 7, 3, SECRET)
    for user, event, secret, text in [(8, 3, SECRET, "another account"), (7, 4, SECRET, "not for event 4"),
                                      (7, 3, "x" * 40, "not valid")]:
        with pytest.raises(Forbidden, match=text):
            check_pass(token, user, event, secret)
    with pytest.raises(Forbidden, match="expired"):
        check_pass(issue_pass(7, 3, datetime.now(timezone.utc) - timedelta(seconds=1), SECRET), 7, 3, SECRET)
    with pytest.raises(Forbidden, match="POST /api/events/3/queue"):
        check_pass(None, 7, 3, SECRET)


def test_a_login_token_is_not_a_pass():
    from domain.auth import issue_token

    login = issue_token(7, "ann", "assistant", SECRET, 3600)
    with pytest.raises(Forbidden):
        check_pass(login, 7, 3, SECRET)


def test_who_may_shop():
    later = SaleSettings(sale_starts_at=NOW + timedelta(hours=1))
    with pytest.raises(Forbidden, match="has not started"):
        check_may_shop(later, 3, 7, None, SECRET, NOW)
    check_may_shop(later, 3, 7, None, SECRET, NOW + timedelta(hours=2))
    queued = SaleSettings(queue_enabled=True, admission_per_minute=60)
    with pytest.raises(Forbidden, match="queue"):
        check_may_shop(queued, 3, 7, None, SECRET, NOW)
    check_may_shop(queued, 3, 7, issue_pass(7, 3, datetime.now(timezone.utc) + timedelta(minutes=5), SECRET),
                   SECRET, NOW)
