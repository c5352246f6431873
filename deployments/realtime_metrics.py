"""Custom metrics of the realtime replicas, exported by Ray to Prometheus (prefix `ray_`)."""
from __future__ import annotations

from ray.util import metrics


class RealtimeMetrics:
    """Open sockets per replica, and how long a fan-out pass over them takes (the bound on how stale
    a watcher's figures can be)."""

    def __init__(self) -> None:
        self._connections = metrics.Gauge("ticketing_ws_connections", "Open WebSockets on this replica")
        self._pass = metrics.Histogram(
            "ticketing_fanout_pass_seconds",
            "Wall time of one pass giving every socket of a replica the newest figures",
            boundaries=[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
        )

    def set_connections(self, count: int) -> None:
        self._connections.set(count)

    def observe_pass(self, seconds: float) -> None:
        self._pass.observe(seconds)
