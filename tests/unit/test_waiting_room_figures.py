"""The pure parts of the waiting-room benchmark (bench/waiting_room.py) and of the rush driver's queue
(ticketing/rush.py): admission rate over a window, admission steps, the delay until a waiting socket shows
its new position, the polling interval, the sale settings of a queued rush, and time to sell out."""
from __future__ import annotations

import pytest

from bench.waiting_room import admission_rate, admission_steps, status_delays
from ticketing.rush import Call, RushConfig, RushResult, cumulative, next_poll_seconds


def test_admission_rate_counts_the_window_only_and_compares_with_the_set_rate():
    # 10 a second for 2 minutes, from t=1000; some before and after the window
    stamps = [1000 + s + 0.5 for s in range(120) for _ in range(10)]
    report = admission_rate(stamps + [990.0, 1200.0], 1000.0, 1120.0, per_minute=600)
    assert report["admitted"] == 1200
    assert report["per_minute"] == 600.0 and report["ratio"] == 1.0 and report["within_5_percent"]
    assert report["per_whole_minute"] == [600, 600]
    assert report["steps"] == 120 and report["step_interval_s_mean"] == 1.0


def test_admission_rate_outside_five_percent_is_flagged():
    stamps = [1000 + s for s in range(60) for _ in range(9)]  # 540 a minute against 600
    report = admission_rate(stamps, 1000.0, 1060.0, per_minute=600)
    assert report["ratio"] == 0.9 and not report["within_5_percent"]


def test_admission_steps_group_one_ticks_batch():
    assert admission_steps([2.0, 1.0, 1.0, 3.0, 2.0]) == [(1.0, 2), (2.0, 4), (3.0, 5)]
    assert admission_steps([]) == []


def test_status_delays_time_each_step_to_the_first_status_at_least_that_new():
    # a socket at place 101: 100 ahead when it joined at t=0; steps admit 10 at t=1 and 10 more at t=2
    steps = [(1.0, 10), (2.0, 20)]
    updates = [(100, 0.0), (90, 1.2), (80, 2.5)]
    delays, beyond, never = status_delays(101, updates, steps)
    assert delays == pytest.approx([0.2, 0.5]) and beyond == pytest.approx([0.2, 0.5]) and never == 0


def test_status_delays_count_a_step_that_was_skipped_by_the_next_update():
    # the socket missed the first step's update; the second one shows both
    delays, _, never = status_delays(101, [(100, 0.0), (80, 2.3)], [(1.0, 10), (2.0, 20)])
    assert delays == pytest.approx([1.3, 0.3]) and never == 0


def test_status_delays_beyond_the_push_interval_discount_the_coalescing():
    # pushed at 0.0; the server may push again from 2.0 (interval 2 s): a step at 1.0 shown at 2.1 is
    # 1.1 s late for the buyer, 0.1 s beyond what the coalescing allows
    delays, beyond, _ = status_delays(101, [(100, 0.0), (90, 2.1)], [(1.0, 10)], interval=2.0)
    assert delays == pytest.approx([1.1]) and beyond == pytest.approx([0.1])


def test_status_delays_count_steps_never_shown_and_ignore_steps_before_joining():
    steps = [(0.5, 5), (1.0, 10), (2.0, 20)]
    delays, _, never = status_delays(101, [(95, 0.7), (90, 1.1)], steps)
    assert delays == pytest.approx([0.1]) and never == 1  # the step at 0.5 came before the socket joined


def test_the_next_poll_is_half_the_estimated_wait_within_bounds():
    assert next_poll_seconds(10.0, (1.0, 30.0)) == 5.0
    assert next_poll_seconds(0.5, (1.0, 30.0)) == 1.0
    assert next_poll_seconds(600.0, (1.0, 30.0)) == 30.0
    assert next_poll_seconds(None, (1.0, 30.0)) == 30.0  # unknown (paused): the longest
    assert next_poll_seconds(10.0, (1.0, 30.0), jitter=1.2) == pytest.approx(6.0)


def test_a_queued_rush_sends_its_sale_settings_and_needs_a_meter():
    assert RushConfig().sale() == {}
    assert RushConfig(queue=True, admission_per_minute=600).sale() == \
        {"queueEnabled": True, "shoppingMinutes": 10, "admissionPerMinute": 600}
    assert RushConfig(queue=True, max_shoppers=50, shopping_minutes=3).sale() == \
        {"queueEnabled": True, "shoppingMinutes": 3, "maxShoppers": 50}
    with pytest.raises(ValueError, match="admission_per_minute, max_shoppers"):
        RushConfig(queue=True)
    with pytest.raises(ValueError, match="poll_seconds"):
        RushConfig(queue=True, admission_per_minute=60, poll_seconds=(5.0, 1.0))


def _order(start: float, latency: float, quantity: int, status: int = 201) -> Call:
    return Call(buyer=0, kind="order", start=start, latency=latency, status=status, quantity=quantity)


def test_sold_out_is_when_the_last_seat_was_confirmed():
    calls = [_order(1.0, 0.5, 2), _order(0.5, 0.1, 1), _order(2.0, 0.2, 5, status=409), _order(3.0, 1.0, 1)]
    result = RushResult(RushConfig(seats=4), 1, 1, [], calls, [], duration=5.0)
    assert result.sold_over_time() == [(0.6, 1), (1.5, 3), (4.0, 4)]
    assert result.sold_out_seconds() == 4.0
    unsold = RushResult(RushConfig(seats=5), 1, 1, [], calls, [], duration=5.0)
    assert unsold.sold_out_seconds() is None
    assert cumulative([(2, 1), (1, 2)]) == [(1, 2), (2, 3)]
