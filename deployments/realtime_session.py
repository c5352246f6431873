"""One connected socket: its bounded outbox, and the `Session` that sends through it.

A socket that can take a message at once gets it in the caller's own step; one that cannot (its client
is not reading) gets a task of its own and queues meanwhile, so a slow client delays no one else.
Availability is coalesced per category in the outbox (a socket that is behind gets the newest figures
once, not every intermediate step); replies and notices are kept in order up to a bound, and a socket
that exceeds it, or whose send fails or is given up on, ends (the `ended` future says why).

Transport-neutral: a message is text made by an `encode(event, data)` (a JSON frame for the plain
WebSocket, a Socket.IO packet for Socket.IO), and each socket's send function is injected. Pure asyncio.
"""
from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from deployments.eager_start import run_until_blocked
from domain.realtime import MessageBudget, message

Key = tuple[int, int]  # (eventId, categoryId)
Stamp = tuple[int, int]  # (broadcaster generation as seen by this replica, broadcaster version)
OUTBOX_LIMIT = 256  # replies + notices waiting for one socket before it counts as a laggard


class Outbox:
    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self.limit = limit
        self.direct: deque[str] = deque()
        self.updates: dict[Key, str] = {}
        self.stamps: dict[Key, Stamp] = {}
        self.overflowed = False

    def put(self, text: str) -> bool:
        """Queue a reply or notice; False (and the socket is to be closed) if the bound is reached."""
        if len(self.direct) >= self.limit:
            self.overflowed = True
            return False
        self.direct.append(text)
        return True

    def put_update(self, key: Key, stamp: Stamp, text: str) -> None:
        """Queue availability figures unless this socket already has the same or newer ones."""
        if key in self.stamps and stamp <= self.stamps[key]:
            return
        self.stamps[key] = stamp
        self.updates[key] = text  # replaces a not yet sent older snapshot: newest wins

    def forget_event(self, event_id: int) -> None:
        """Left the room: drop pending figures, so a later join starts afresh."""
        for key in [k for k in self.stamps if k[0] == event_id]:
            self.stamps.pop(key, None)
            self.updates.pop(key, None)

    def take(self) -> list[str]:
        out = list(self.direct)
        self.direct.clear()
        out.extend(self.updates.values())
        self.updates.clear()
        return out


Sender = Callable[[str], Awaitable[None]]
Encoder = Callable[[str, dict], str]  # (event, data) → the text one socket is sent
TOO_SLOW = ("outbox full", "send stalled")  # why a socket is closed as a laggard
# Set by a message handler's caller: what Session.send sends meanwhile is also recorded there, so the
# reply can answer a Socket.IO acknowledgement too. Per task, so concurrent handlers do not mix.
replies: contextvars.ContextVar[list[tuple[str, dict]] | None] = contextvars.ContextVar("replies", default=None)


@dataclass(eq=False)
class Session:
    """One connected socket of an authenticated user.

    Messages are sent from the caller's own step (the fan-out loop, a message handler) while the socket
    takes them at once, which is nearly always: waking a sender task per socket instead cost 3× the CPU
    of the send itself at 5,000 sockets. A send that cannot finish at once (the client is not reading)
    is finished by a task of this socket's own, and what is queued meanwhile waits in the outbox.
    """

    id: str
    user_id: int
    encode: Encoder = message
    outbox: Outbox = field(default_factory=Outbox)
    rooms: set[int] = field(default_factory=set)
    held: set[Key] = field(default_factory=set)  # categories where this socket made holds
    gone: bool = False  # the socket has closed and its clean-up began: it makes no new hold
    address: str | None = None  # the client's address at the handshake, for the abuse limits
    sender: Sender | None = None  # None until attached: messages wait in the outbox
    draining: asyncio.Task | None = None  # finishing a send that blocked, then what queued behind it
    blocked: asyncio.Future | None = None  # that blocked send's own task (cancelled with the socket)
    send_started: float = 0.0  # monotonic time the blocked send began, 0 when none is blocked
    ended: asyncio.Future | None = None  # resolves with the reason the socket must be closed
    seen: int = -1  # the hub's figures sequence this socket was last brought up to date with
    budget: MessageBudget = field(default_factory=MessageBudget)  # the messages it may still send now

    def attach(self, sender: Sender) -> asyncio.Future:
        """Start sending through `sender`; the returned future resolves if this socket is to be closed."""
        self.sender = sender
        self.ended = asyncio.get_running_loop().create_future()
        self.flush()
        return self.ended

    def detach(self) -> None:
        self.sender = None
        for task in (self.draining, self.blocked):  # the drain may not have started to own the send yet
            if task is not None:
                task.cancel()

    def send(self, event: str, data: dict) -> bool:
        recorded = replies.get()
        if recorded is not None:
            recorded.append((event, data))
        return self.put(self.encode(event, data))

    def put(self, text: str) -> bool:
        """Queue a reply or notice and send it if the socket is free; False if the socket is a laggard."""
        accepted = self.outbox.put(text)
        self.flush()
        return accepted

    def update(self, key: Key, stamp: Stamp, text: str) -> None:
        self.outbox.put_update(key, stamp, text)
        self.flush()

    def flush(self) -> None:
        if self.sender is None or self.draining is not None or self.ended is None or self.ended.done():
            return
        if self.outbox.overflowed:
            self._end(TOO_SLOW[0])
            return
        items = self.outbox.take()
        for i, text in enumerate(items):
            try:
                rest = run_until_blocked(self.sender(text))
            except Exception as exc:  # the client went away: the reader sees the disconnect too
                self._end(f"send failed: {type(exc).__name__}")
                return
            if rest is not None:
                self.send_started = time.monotonic()
                self.blocked = rest
                self.draining = asyncio.ensure_future(self._drain(rest, items[i + 1:]))
                return

    async def _drain(self, blocked: Awaitable[None], queued: list[str]) -> None:
        try:
            await blocked
            while queued:
                for text in queued:
                    self.send_started = time.monotonic()
                    await self.sender(text)
                if self.outbox.overflowed:
                    self._end(TOO_SLOW[0])
                    return
                queued = self.outbox.take()
        except asyncio.CancelledError:  # the watchdog gave up on this socket, or it was detached
            self._end(TOO_SLOW[1])
        except Exception as exc:
            self._end(f"send failed: {type(exc).__name__}")
        finally:
            self.draining, self.blocked, self.send_started = None, None, 0.0
        self.flush()  # anything queued between the last take and now

    def stalled(self, now: float, limit_s: float) -> bool:
        return bool(self.send_started) and now - self.send_started > limit_s

    def _end(self, reason: str) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(reason)
