"""Abuse limits at the edge: who is asking (account, client address), the check before any work, the
429 with `Retry-After`, and the `ticketing_rate_limited_total{action, scope}` counter.

Runs in each replica that takes the limited requests (the Gateway; the realtime replicas for
`lock-tickets`), with its own buckets: no extra hop on the hot path, so the effective limit of the
cluster is up to (replicas × limit). The rules are `domain.limits`; the sizes and their trade-offs are
in docs/operations.md, "Abuse limits and slow clients".

Queue joins: the queue's route calls `self.limits.check(Action.QUEUE_JOIN, request, account=caller.user_id)`
first thing (synchronous, a dict lookup per scope); it raises the 429 (`TooManyRequests`) itself.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from domain.errors import TooManyRequests
from domain.limits import Action, Limiter, Limits, Scope, retry_message
from ticketing import settings

NO_ADDRESS = "none"  # TICKETING_CLIENT_ADDRESS_HEADER=none: no trustworthy address, no per-address limits
_counter = None


def _rate_limited_counter():
    global _counter
    if _counter is None:
        from ray.util import metrics

        _counter = metrics.Counter("ticketing_rate_limited", "Requests refused by an abuse limit (429)",
                                   ("action", "scope"))
    return _counter


def base_limits() -> Limits:
    """The defaults of domain.limits with TICKETING_RATE_LIMITS laid over them."""
    return Limits().merged(settings.rate_limits())


def client_address(client: Any, headers: Mapping[str, str], header: str | None) -> str | None:
    """The address to count a request against. `header` unset: the peer (`client` of the ASGI scope, a
    (host, port) pair). Else the LAST hop of that header: the one the trusted proxy in front of us
    appended; anything left of it was written by the client and can be forged. No header on a request:
    the peer again. `none`: no address (per-address limits off)."""
    if header is not None:
        if header.lower() == NO_ADDRESS:
            return None
        value = headers.get(header)
        if value:
            last = value.rsplit(",", 1)[-1].strip()
            if last:
                return last
    if client:
        return str(client[0])
    return None


log = logging.getLogger(__name__)


class EdgeLimits:
    """One replica's limiter. `check` raises TooManyRequests (429 + Retry-After at the edge) or returns."""

    def __init__(self, limits: Limits | None = None, header: str | None = None, clock=time.monotonic) -> None:
        self.limiter = Limiter(limits or base_limits())
        self.header = header if header is not None else settings.client_address_header()
        if self.header is None and settings.haproxy_ingress():
            # Ray's HAProxy ingress does not forward the client's address: every peer is HAProxy itself,
            # and counting them as one address would shut every buyer out together. Per-account limits stay.
            log.warning("per-address limits are off: behind Serve's HAProxy ingress set "
                        "TICKETING_CLIENT_ADDRESS_HEADER to the header of a trusted load balancer")
            self.header = NO_ADDRESS
        self.clock = clock

    def configure(self, user_config: dict | None) -> None:
        """user_config's `rate_limits` over the environment's limits (live, no restart)."""
        self.limiter.configure(base_limits().merged((user_config or {}).get("rate_limits")))

    def address_of(self, request: Any) -> str | None:
        """`request`: a Starlette Request or WebSocket (anything with `.client` and `.headers`)."""
        return client_address(request.client, request.headers, self.header)

    def check(self, action: Action, request: Any, *, account: str | int | None = None, cost: float = 1.0,
              address: str | None = None) -> None:
        if not self.limiter.limits.rates:
            return
        if address is None and request is not None:
            address = self.address_of(request)
        refused = self.limiter.check(action, self.clock(), cost, account=None if account is None else str(account),
                                     address=address)
        if refused is not None:
            _rate_limited_counter().inc(tags={"action": refused.action.value, "scope": refused.scope.value})
            raise TooManyRequests(retry_message(refused.action, refused.retry_after), refused.retry_after)


__all__ = ["Action", "EdgeLimits", "Scope", "client_address"]
