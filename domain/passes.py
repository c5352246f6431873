"""Shopping passes: the signed, expiring proof that a buyer was admitted from an event's queue.

A pass is a JWT (HS256, the install's secret) with its own type claim, so a login token is never a pass
and a pass is never a login token. It names the account and the event, and expires when the buyer's
shopping time ends.
"""
from __future__ import annotations

from datetime import datetime

import jwt

from domain.auth import decode_hs256
from domain.errors import Forbidden
from domain.sale import SaleSettings, check_started, queue_route

PASS_TYPE = "queue-pass"
HTTP_CARRIER = "in the X-Queue-Pass header"  # where a client puts its pass (the socket: lock-tickets' queuePass)


def issue_pass(user_id: int, event_id: int, expires_at: datetime, secret: str) -> str:
    claims = {"typ": PASS_TYPE, "sub": str(user_id), "evt": event_id, "exp": int(expires_at.timestamp())}
    return jwt.encode(claims, secret, algorithm="HS256")


def check_pass(token: str | None, user_id: int, event_id: int, secret: str, carrier: str = HTTP_CARRIER) -> None:
    """Raises Forbidden (saying where to queue) unless `token` is this account's unexpired pass for this event.
    `carrier` says where the client sends the pass."""
    where = f"join the queue at POST {queue_route(event_id)}"
    if not token:
        raise Forbidden(f"Event {event_id} sells through its queue: {where} and send the pass you get "
                        f"when admitted {carrier}")
    try:
        claims = decode_hs256(token, secret, ["exp", "sub", "evt", "typ"])
    except jwt.ExpiredSignatureError:
        raise Forbidden(f"Your pass for event {event_id} has expired: your shopping time is over") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise Forbidden(f"The queue pass is not valid: {where}") from None
    if claims.get("typ") != PASS_TYPE or claims.get("evt") != event_id:
        raise Forbidden(f"The queue pass is not for event {event_id}: {where}")
    if claims.get("sub") != str(user_id):
        raise Forbidden(f"The queue pass belongs to another account: {where}")


def check_may_shop(settings: SaleSettings, event_id: int, user_id: int, token: str | None, secret: str,
                   now: datetime, carrier: str = HTTP_CARRIER) -> None:
    """Holds and orders of an event: while its queue is on, only with this account's pass (the queue
    decides when the sale starts); without a queue, once the sale has started."""
    if settings.queue_enabled:
        check_pass(token, user_id, event_id, secret, carrier)
    else:
        check_started(settings, event_id, now)
