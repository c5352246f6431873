"""The broadcaster's board on its own (no Ray): a poll gets exactly what changed since its version."""
from __future__ import annotations

from actors.broadcaster import Board


def figures(event: int, category: int, available: int) -> dict:
    return {"eventId": event, "categoryId": category, "availableSeats": available}


def test_a_poll_gets_the_newest_figures_of_what_changed_since_and_the_notices_in_order():
    board = Board()
    board.publish(figures(1, 10, 5), [("order-completed", 7, {"n": 1})])  # version 1
    board.publish(figures(1, 11, 9))  # 2
    board.publish(figures(2, 20, 3), [("order-completed", 8, {"n": 2})])  # 3
    board.publish_queue({"event_id": 1, "waiting": 4})  # 4
    board.publish(figures(1, 10, 4), [("order-cancelled", 7, {"n": 3})])  # 5: category 10 again

    everything = board.since(0)
    assert [(s["categoryId"], s["availableSeats"], s["version"]) for s in everything["snapshots"]] == \
        [(11, 9, 2), (20, 3, 3), (10, 4, 5)]  # one entry per category: its newest figures
    assert [n[2]["n"] for n in everything["notices"]] == [1, 2, 3]
    assert everything["queues"] == [{"event_id": 1, "waiting": 4}]

    after_3 = board.since(3)
    assert [(s["categoryId"], s["version"]) for s in after_3["snapshots"]] == [(10, 5)]
    assert [n[2]["n"] for n in after_3["notices"]] == [3]
    assert after_3["queues"] == [{"event_id": 1, "waiting": 4}]
    assert board.since(5) == {"snapshots": [], "notices": [], "queues": []}
    assert [s["categoryId"] for s in board.current(1)] == [11, 10]


def test_the_notice_backlog_keeps_the_newest():
    board = Board(notice_backlog=3)
    for n in range(5):
        board.publish(figures(1, 1, n), [("order-completed", n, {"n": n})])
    assert [n[2]["n"] for n in board.since(0)["notices"]] == [2, 3, 4]
    assert [n[2]["n"] for n in board.since(3)["notices"]] == [3, 4]


def test_a_category_published_again_moves_to_the_newest_end():
    """The order `since` relies on: after thousands of categories, a change to an old one is what a poll
    just behind the newest version gets, and nothing else."""
    board = Board()
    for category in range(5000):
        board.publish(figures(category, category, 1), [("order-completed", category, {})])
    board.publish(figures(7, 7, 0))
    changed = board.since(board.version - 1)
    assert [(s["categoryId"], s["availableSeats"]) for s in changed["snapshots"]] == [(7, 0)]
    assert changed["notices"] == [] and changed["queues"] == []
    assert len(board.since(0)["snapshots"]) == 5000
    assert [(s["categoryId"], s["availableSeats"], s["version"]) for s in board.current(7)] == [(7, 0, 5001)]
    assert board.current(5000) == []
