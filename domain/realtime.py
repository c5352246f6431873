"""The realtime protocol's pure parts: parsing client messages, checking their payloads, and the JSON
shapes the server sends. Two framings carry the same events: plain WebSocket, each message a JSON object
{"event": NAME, "data": {...}}, and Socket.IO v4 (namespace /realtime), as the seed spoke. See
docs/websocket.md.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from domain.limits import Rate
from domain.vocabulary import MAX_ID, MAX_QUANTITY, CategoryFigures

MAX_MESSAGE_CHARS = 16_384

CLIENT_EVENTS = frozenset(
    {"join-event-room", "leave-event-room", "lock-tickets", "unlock-tickets", "get-my-locks", "heartbeat",
     "join-queue", "queue-status"}
)
MAX_PASS_CHARS = 2000  # as the X-Queue-Pass header's limit
# Event rooms one socket may be in at once: every change of availability walks each socket's rooms, so one
# client in thousands of rooms would slow every watcher of its replica.
MAX_ROOMS_PER_SOCKET = 50

# Messages one socket may send: a burst of MESSAGE_BURST (room for joining MAX_ROOMS_PER_SOCKET rooms at
# once), then MESSAGE_RATE a second. Most messages read the database or call an actor, so one client
# looping on `get-my-locks` or `join-event-room` would otherwise cost its replica a query per message.
# A message past the budget is answered 429 and does nothing; the socket stays open. Heartbeats are free.
MESSAGE_BURST = 100
MESSAGE_RATE = 20.0
MESSAGES = Rate(MESSAGE_BURST, MESSAGE_RATE)
FREE_MESSAGES = frozenset({"heartbeat"})
TOO_MANY_MESSAGES = "Too many messages on this socket; slow down"

# Close codes (4000-4999 are free for applications; the handshake refusal is an HTTP 401 where the
# server supports it, else a close before accept, which clients see as HTTP 403).
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_SLOW = 1013  # "try again later": the client did not keep up with its messages
CLOSE_TOO_BIG = 1009


class ProtocolError(Exception):
    """A message the server cannot act on; reported to the client, never closes the socket."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ClientMessage:
    event: str
    data: dict


def parse_message(text: str) -> ClientMessage:
    if len(text) > MAX_MESSAGE_CHARS:
        raise ProtocolError(f"Message too large (limit {MAX_MESSAGE_CHARS} characters)")
    try:
        raw = json.loads(text)
    except ValueError:
        raise ProtocolError('Invalid message: expected JSON {"event": name, "data": {...}}') from None
    if not isinstance(raw, dict) or not isinstance(raw.get("event"), str):
        raise ProtocolError('Invalid message: expected JSON {"event": name, "data": {...}}')
    return client_message(raw["event"], raw.get("data"))


def client_message(event: str, data: object) -> ClientMessage:
    """An event name and its payload, however framed (a Socket.IO event arrives already decoded)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError("Invalid message: data must be a JSON object")
    if event not in CLIENT_EVENTS:
        raise ProtocolError(f"Unknown event: {event[:64]}")
    return ClientMessage(event, data)


def positive_id(data: dict, field: str) -> int:
    value = data.get(field)
    if type(value) is not int or not 1 <= value <= MAX_ID:
        raise ProtocolError(f"{field} must be a positive integer")
    return value


@dataclass
class MessageBudget:
    """One socket's token bucket for its messages (`MESSAGES`); `now` is monotonic."""

    tokens: float = MESSAGE_BURST
    at: float | None = None  # when `tokens` was counted; None: not yet (the bucket starts full)

    def take(self, now: float) -> bool:
        """Spend one message, if the budget has one."""
        if self.at is not None:
            self.tokens = MESSAGES.refilled(self.tokens, now - self.at)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def check_message_budget(budget: MessageBudget, event: str, now: float) -> None:
    if event not in FREE_MESSAGES and not budget.take(now):
        raise ProtocolError(TOO_MANY_MESSAGES, 429)


def check_may_join(rooms: set[int], event_id: int) -> None:
    """A socket may be in MAX_ROOMS_PER_SOCKET event rooms at once (joining one it is in is no new room)."""
    if event_id not in rooms and len(rooms) >= MAX_ROOMS_PER_SOCKET:
        raise ProtocolError(f"Too many event rooms on this socket (at most {MAX_ROOMS_PER_SOCKET}): leave one first")


def quantity(data: dict) -> int:
    value = data.get("quantity")
    # The range before anything else: a quantity below 1 would be a negative cost to the rate limits.
    if type(value) is not int or not 1 <= value <= MAX_QUANTITY:
        raise ProtocolError(f"quantity must be an integer between 1 and {MAX_QUANTITY}")
    return value  # the category's rules check its own maximum (max_per_order)


def check_identity(data: dict, user_id: int) -> None:
    """Identity comes from the token. A payload `userId` (sent by seed clients) must name the same
    user, else the message is refused: it is either a confused client or an impersonation attempt."""
    claimed = data.get("userId")
    if claimed is None:
        return
    if isinstance(claimed, bool) or not isinstance(claimed, (int, str)) or str(claimed).strip() != str(user_id):
        raise ProtocolError("Unauthorized", 403)


def lock_id(data: dict) -> str | None:
    value = data.get("lockId")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ProtocolError("lockId must be a string")
    return value


def queue_pass(data: dict) -> str | None:
    """The shopping pass a `lock-tickets` payload may carry (`queuePass`), as HTTP's X-Queue-Pass header."""
    value = data.get("queuePass")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_PASS_CHARS:
        raise ProtocolError("queuePass must be a string")
    return value


# ---- pushing a buyer's turn ----------------------------------------------------------------------------

# What a waiting buyer watches in a `queue-status`: everything but the queue's length (which grows with
# every join and would otherwise push every socket on every join batch).
QUEUE_SEEN = ("status", "place", "peopleAhead", "estimatedWaitSeconds", "paused", "saleStartsAt",
              "passExpiresAt")


def queue_seen(state: dict) -> tuple:
    return tuple(state.get(name) for name in QUEUE_SEEN)


def queue_push_at(sent: tuple | None, sent_at: float, seen: tuple, now: float, interval: float) -> float | None:
    """When a socket is to be pushed its `queue-status` (monotonic seconds), given what it was last sent
    (`sent`, at `sent_at`) and what it would see now (`seen`): None when nothing it sees changed; at once
    when its status (admitted, expired) or its place (drawn) changed, or it was never sent one; otherwise
    no sooner than
    `interval` after the last one, so a socket gets at most one such update per interval however often
    admissions move the queue."""
    if seen == sent:
        return None
    if sent is None or seen[:2] != sent[:2]:  # status, place
        return now
    return max(now, sent_at + interval)


# ---- what the server sends ---------------------------------------------------------------------------


def message(event: str, data: dict) -> str:
    return json.dumps({"event": event, "data": data}, separators=(",", ":"))


def now_iso() -> str:
    return iso_ms(datetime.now(timezone.utc))


def iso_ms(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def availability(figures: dict) -> dict:
    """A category actor's figures → the seed's `availability-update` payload. `totalTickets` is the
    category's real size (the seed sent available + locked); `timestamp` is when the change committed."""
    committed = figures.get("committedAt")
    moment = datetime.fromtimestamp(committed, timezone.utc) if committed else datetime.now(timezone.utc)
    return {
        "eventId": figures["eventId"],
        "categoryId": figures["categoryId"],
        "availableTickets": figures["availableSeats"],
        "lockedTickets": figures["heldSeats"],
        "soldTickets": figures["soldSeats"],
        "totalTickets": figures["totalSeats"],
        "onSale": figures.get("onSale", True),
        "timestamp": iso_ms(moment),
    }


def db_figures(event_id: int, category_id: int, total: int, sold: int, held: int, on_sale: bool) -> dict:
    """Figures in the actor's shape from the database counters (for categories not yet published)."""
    seats = CategoryFigures(total=total, sold=sold, held=held)
    return {
        "eventId": event_id,
        "categoryId": category_id,
        "totalSeats": seats.total,
        "soldSeats": seats.sold,
        "heldSeats": seats.held,
        "availableSeats": seats.available,
        "onSale": on_sale,
    }


def refusal(text: str, status: int, available: int | None = None) -> dict:
    body = {"success": False, "message": text, "statusCode": status}
    if available is not None:
        body["availableTickets"] = available
    return body



def order_notices(event_id: int, category_id: int, new_orders: list, cancelled_orders: list
                  ) -> list[tuple[str, int, dict]]:
    """The seed's per-user notices after a committed batch: (event, user id, payload) for each order
    completed or cancelled (objects with `id`, `user_id`, `quantity`)."""
    notices = []
    for order in new_orders:
        notices.append(("order-completed", order.user_id, {
            "orderId": str(order.id), "eventId": event_id, "categoryId": category_id,
            "quantity": order.quantity, "message": "Your order has been completed successfully!",
        }))
    for order in cancelled_orders:
        notices.append(("order-cancelled", order.user_id, {
            "orderId": str(order.id), "eventId": event_id, "categoryId": category_id,
            "quantity": order.quantity, "message": "Your order has been cancelled. Tickets are now available again.",
        }))
    return notices
