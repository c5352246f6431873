"""Custom metrics of the category and queue actors, exported by Ray to Prometheus (prefix `ray_`)."""
from __future__ import annotations

from ray.util import metrics

_TAGS = ("event_id", "category_id")
_held = _sold = _available = _granted = _refused = _latency = _request_latency = _refused_by_lease = None


def request_kind(request) -> str:
    """The `kind` tag of a request: hold, release, releasesession, confirm, purchase, cancel."""
    return type(request).__name__.removesuffix("Request").lower()


def _init() -> None:
    global _held, _sold, _available, _granted, _refused, _latency, _request_latency, _refused_by_lease
    if _held is not None:
        return
    _refused_by_lease = metrics.Counter(
        "ticketing_requests_refused_by_lease",
        "Requests a replica refused itself under a category's refusal lease (not in ticketing_requests_refused)",
        _TAGS + ("kind",),
    )
    _held = metrics.Gauge("ticketing_held_seats", "Seats held (locked) right now", _TAGS)
    _sold = metrics.Gauge("ticketing_sold_seats", "Seats sold (confirmed orders)", _TAGS)
    _available = metrics.Gauge("ticketing_available_seats", "Seats free to hold or buy", _TAGS)
    _granted = metrics.Counter("ticketing_requests_granted", "Requests granted, by kind", _TAGS + ("kind",))
    _refused = metrics.Counter("ticketing_requests_refused", "Requests refused, by kind", _TAGS + ("kind",))
    _request_latency = metrics.Histogram(
        "ticketing_request_seconds",
        "From a call's arrival at the category actor to its durable answer (queue + decide + commit)",
        boundaries=[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
        tag_keys=_TAGS,
    )
    _latency = metrics.Histogram(
        "ticketing_batch_seconds",
        "Time to decide and commit one batch of requests",
        boundaries=[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
        tag_keys=_TAGS,
    )


class CategoryMetrics:
    def __init__(self, event_id: int, category_id: int) -> None:
        _init()
        self.tags = {"event_id": str(event_id), "category_id": str(category_id)}

    def observe_call(self, seconds: float) -> None:
        _request_latency.observe(seconds, tags=self.tags)

    def observe_batch(self, requests_and_outcomes, seconds: float, figures: dict) -> None:
        _latency.observe(seconds, tags=self.tags)
        _held.set(figures["heldSeats"], tags=self.tags)
        _sold.set(figures["soldSeats"], tags=self.tags)
        _available.set(figures["availableSeats"], tags=self.tags)
        counts: dict[tuple[bool, str], int] = {}
        for request, outcome in requests_and_outcomes:
            key = (outcome.ok, request_kind(request))
            counts[key] = counts.get(key, 0) + 1
        for (ok, kind), n in counts.items():
            (_granted if ok else _refused).inc(n, tags={**self.tags, "kind": kind})


class LeaseMetrics:
    """Refusals one replica answered from refusal leases, counted here and handed to Ray in bulk (`flush`):
    one metric update per answer would cost a rush's cheapest answers a good part of their CPU."""

    def __init__(self) -> None:
        self.counts: dict[tuple[int, int, str], int] = {}

    def count(self, event_id: int, category_id: int, request) -> None:
        key = (event_id, category_id, request_kind(request))
        self.counts[key] = self.counts.get(key, 0) + 1

    def flush(self) -> None:
        if not self.counts:
            return
        _init()
        counts, self.counts = self.counts, {}
        for (event_id, category_id, kind), n in counts.items():
            _refused_by_lease.inc(n, tags={"event_id": str(event_id), "category_id": str(category_id), "kind": kind})


_QUEUE_TAGS = ("event_id",)
_queue_gauges: dict | None = None
_queue_admissions = None


def _init_queue() -> None:
    global _queue_gauges, _queue_admissions
    if _queue_gauges is not None:
        return
    _queue_gauges = {
        "length": metrics.Gauge("ticketing_queue_length", "Buyers in the event's queue not yet admitted "
                                "(pre-queue and waiting)", _QUEUE_TAGS),
        "admitted": metrics.Gauge("ticketing_queue_admitted", "Buyers admitted from the queue so far", _QUEUE_TAGS),
        "shopping": metrics.Gauge("ticketing_queue_shopping", "Admitted buyers whose pass has not expired and who have not bought yet",
                                  _QUEUE_TAGS),
        "admitted_last_minute": metrics.Gauge("ticketing_queue_admitted_last_minute",
                                              "Buyers admitted in the last 60 seconds", _QUEUE_TAGS),
    }
    _queue_admissions = metrics.Counter("ticketing_queue_admissions", "Buyers admitted from the queue",
                                        _QUEUE_TAGS)


class QueueMetrics:
    """An event's waiting room, set by its queue actor whenever it publishes new figures."""

    def __init__(self, event_id: int) -> None:
        _init_queue()
        self.tags = {"event_id": str(event_id)}

    def observe(self, figures) -> None:
        """`figures`: a domain.queue.QueueFigures."""
        _queue_gauges["length"].set(figures.length, tags=self.tags)
        _queue_gauges["admitted"].set(figures.admitted, tags=self.tags)
        _queue_gauges["shopping"].set(figures.shopping, tags=self.tags)
        _queue_gauges["admitted_last_minute"].set(figures.admitted_last_minute, tags=self.tags)

    def count_admissions(self, count: int) -> None:
        if count > 0:
            _queue_admissions.inc(count, tags=self.tags)
