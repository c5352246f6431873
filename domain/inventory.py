"""The seats of one ticket category: the rules that decide holds, confirmations, purchases and
cancellations, in arrival order, against the category's current state.

`CategoryInventory` is pure: it never touches the database. Each decision that changes something is
recorded in a `Changes` object; the category actor writes a whole batch of them in one transaction and
only then answers. If that write fails, the actor reloads the inventory from PostgreSQL (the truth).

An event may limit the seats one account holds or buys across all its categories (`ticket_limit`). One
category cannot see the others, so the actor hands the inventory an `Allowance` per batch: what each
buyer of the batch may still take, read from the database under a lock on those buyers' counts.
"""
from __future__ import annotations

import enum
import heapq
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from domain.vocabulary import HoldStatus, available_seats

# ---- requests (what callers ask a category for) -------------------------------------------------


@dataclass(frozen=True)
class HoldRequest:
    user_id: int
    quantity: int
    session_id: str | None = None


@dataclass(frozen=True)
class ReleaseRequest:
    """Release `hold_id`, or the user's active hold in this category when `hold_id` is None."""

    user_id: int
    hold_id: uuid.UUID | None = None


@dataclass(frozen=True)
class ReleaseSessionRequest:
    """A WebSocket session ended: release its unconfirmed holds."""

    session_id: str


@dataclass(frozen=True)
class ConfirmRequest:
    user_id: int
    hold_id: uuid.UUID
    quantity: int | None = None
    notes: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class PurchaseRequest:
    user_id: int
    quantity: int
    notes: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class CancelRequest:
    user_id: int
    order_id: int


Request = HoldRequest | ReleaseRequest | ReleaseSessionRequest | ConfirmRequest | PurchaseRequest | CancelRequest

# ---- state ---------------------------------------------------------------------------------------


@dataclass
class CategoryInfo:
    event_id: int
    category_id: int
    event_name: str
    category_name: str
    price: Decimal
    total_seats: int
    event_date: datetime
    event_active: bool
    category_active: bool
    ticket_limit: int | None = None  # seats one account may hold or buy in the event (all categories)


@dataclass
class ActiveHold:
    id: uuid.UUID
    user_id: int
    quantity: int
    created_at: datetime
    expires_at: datetime
    session_id: str | None = None


@dataclass
class SoldOrder:
    """A confirmed order of this category (there are at most `total_seats` of them)."""

    id: int
    user_id: int
    quantity: int


@dataclass
class NewOrder:
    user_id: int
    quantity: int
    unit_price: Decimal
    event_name: str
    category_name: str
    notes: str | None
    hold_id: uuid.UUID | None
    idempotency_key: str | None
    id: int | None = None  # set once the row is inserted
    created_at: datetime | None = None

    @property
    def total_price(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass
class Changes:
    """What a batch of decisions wrote, in the shape the database write needs."""

    new_holds: dict[uuid.UUID, tuple[ActiveHold, HoldStatus]] = field(default_factory=dict)  # hold, final status
    hold_status: dict[uuid.UUID, HoldStatus] = field(default_factory=dict)  # existing hold → new status
    new_orders: list[NewOrder] = field(default_factory=list)
    cancelled_orders: list[SoldOrder] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.new_holds or self.hold_status or self.new_orders or self.cancelled_orders)


class Refusal(enum.Enum):
    """Why a category said no. The edge (HTTP, WebSocket) turns each into a status and a message."""

    CATEGORY_NOT_FOUND = "category_not_found"
    OFF_SALE = "off_sale"  # event or category deactivated or deleted
    EVENT_PAST = "event_past"
    BAD_QUANTITY = "bad_quantity"  # outside 1..limit
    ALREADY_HOLDING = "already_holding"
    NOT_ENOUGH_TO_HOLD = "not_enough_to_hold"
    NOT_ENOUGH_TO_BUY = "not_enough_to_buy"
    NO_HOLD_TO_RELEASE = "no_hold_to_release"
    INVALID_HOLD = "invalid_hold"  # unknown, someone else's, expired or already closed
    QUANTITY_MISMATCH = "quantity_mismatch"  # an order's quantity differs from its hold's (limit)
    NOT_CANCELLABLE = "not_cancellable"
    NOT_YOUR_ORDER = "not_your_order"
    DUPLICATE_IDEMPOTENCY_KEY = "duplicate_idempotency_key"
    TICKET_LIMIT = "ticket_limit"  # the account would pass the event's ticket limit (limit)
    CONFLICT = "conflict"  # the database refused a write the rules allowed; retrying may succeed
    UNAVAILABLE = "unavailable"  # outcome unknown (actor restarting, database down): retry


@dataclass
class Outcome:
    """A category's answer to one request: granted (refusal is None) or refused, as plain data."""

    refusal: Refusal | None = None
    hold: ActiveHold | None = None
    order: NewOrder | None = None
    released: int = 0  # seats released
    available: int | None = None
    limit: int | None = None  # the bound broken: max per order, the hold's size, or the event's ticket limit

    @property
    def ok(self) -> bool:
        return self.refusal is None


def refuse(refusal: Refusal, available: int | None = None, limit: int | None = None) -> Outcome:
    return Outcome(refusal=refusal, available=available, limit=limit)


# ---- refusal leases: a caller may answer what the category would refuse anyway -----------------------


def may_free_seats(request: Request) -> bool:
    """Can deciding `request` make seats available? (A category holds these back while a lease runs.)"""
    return isinstance(request, (CancelRequest, ReleaseRequest, ReleaseSessionRequest))


@dataclass(frozen=True)
class RefusalLease:
    """A category's promise to the caller it answers: for `seconds` from when that caller sent its call,
    every new purchase of 1..`max_per_order` seats, and every such hold by someone not among `holders`,
    would be refused with the same answer. So the caller may answer those requests itself, without a call.

    It holds because nothing that could change that answer happens while a lease may run:
    `CategoryInventory.refusal_lease` ends it before the next hold expires and before the event starts,
    and the category actor holds back cancellations, releases, refreshes and new settings until every
    lease it granted has run out (`may_free_seats`). A seat freed by a cancellation is therefore sellable
    to everyone once the cancellation is answered."""

    seconds: float
    closed: Refusal | None  # OFF_SALE or EVENT_PAST: every purchase and hold; None: sold out
    max_per_order: int
    holders: frozenset[int]  # users holding seats here: their hold requests may be ALREADY_HOLDING

    def answer(self, request: Request) -> Outcome | None:
        """The category's answer to `request`, if this lease covers it; None: ask the category."""
        if isinstance(request, PurchaseRequest):
            sold_out = Refusal.NOT_ENOUGH_TO_BUY
        elif isinstance(request, HoldRequest) and (self.closed is not None or request.user_id not in self.holders):
            sold_out = Refusal.NOT_ENOUGH_TO_HOLD  # nobody becomes a holder while a sold-out lease runs
        else:
            return None
        if self.closed is not None:
            return refuse(self.closed)
        if type(request.quantity) is int and 1 <= request.quantity <= self.max_per_order:
            return refuse(sold_out, 0)
        return None  # a bad quantity: the category says why


@dataclass
class Answers:
    """A category actor's reply to one call: an Outcome per request, in order, and the lease it grants."""

    outcomes: list[Outcome]
    lease: RefusalLease | None = None


def idle_exit_after(idle_exit_s: float, closed_exit_s: float, *, selling: bool) -> float | None:
    """How long a category actor with no active hold may sit idle before it ends its process (None: it
    stays): any category after `idle_exit_s`, and one that can no longer sell also after `closed_exit_s`
    (0 turns either off). A category on sale stays warm for its next buyer; a closed one has none."""
    waits = [s for s in (idle_exit_s, 0.0 if selling else closed_exit_s) if s > 0]
    return min(waits, default=None)


# ---- the per-account ticket limit of an event --------------------------------------------------------


@dataclass
class Allowance:
    """The event's ticket limit and, for each buyer of one batch, the seats they hold or have bought in
    all the event's categories, kept up to date as the batch decides. Valid only while those counts
    stay locked in the database, i.e. for one batch."""

    limit: int
    tickets: dict[int, int]  # user → seats held or bought in the event; every buyer of the batch

    def left(self, user_id: int) -> int:
        """Seats the buyer may still take (0 when a lowered limit is below what they already have)."""
        if user_id not in self.tickets:
            # No count was read for this buyer, so nothing proves any seat fits: a bug upstream.
            raise KeyError(f"no ticket count read for user {user_id}")
        return max(0, self.limit - self.tickets[user_id])

    def fits(self, user_id: int, quantity: int) -> bool:
        return quantity <= self.left(user_id)

    def take(self, user_id: int, quantity: int) -> None:
        self.tickets[user_id] += quantity

    def give_back(self, user_id: int, quantity: int) -> None:
        """Seats freed in the same batch (release, expiry, cancellation). The batch's write frees seats
        before it takes any, so a later request of the batch may use them."""
        if user_id in self.tickets:
            self.tickets[user_id] -= quantity


# ---- the rules -------------------------------------------------------------------------------------

class CategoryInventory:
    def __init__(
        self,
        info: CategoryInfo,
        holds: list[ActiveHold],
        orders: list[SoldOrder],
        *,
        hold_seconds: float,
        max_per_order: int,
    ) -> None:
        self.info = info
        self.hold_seconds = hold_seconds
        self.max_per_order = max_per_order
        self.holds: dict[uuid.UUID, ActiveHold] = {h.id: h for h in holds}
        self.hold_of_user: dict[int, uuid.UUID] = {h.user_id: h.id for h in holds}
        self.orders: dict[int, SoldOrder] = {o.id: o for o in orders}
        self.held = sum(h.quantity for h in holds)
        self.sold = sum(o.quantity for o in orders)
        self._expiry_heap = [(h.expires_at, h.id) for h in holds]
        heapq.heapify(self._expiry_heap)
        self.changes = Changes()
        self.allowance: Allowance | None = None  # this batch's, when the event has a ticket limit

    # -- figures --
    @property
    def available(self) -> int:
        return available_seats(self.info.total_seats, self.sold, self.held)

    def figures(self) -> dict:
        return {
            "eventId": self.info.event_id,
            "categoryId": self.info.category_id,
            "categoryName": self.info.category_name,
            "totalSeats": self.info.total_seats,
            "soldSeats": self.sold,
            "heldSeats": self.held,
            "availableSeats": self.available,
            "activeHolds": len(self.holds),
            "onSale": self.info.event_active and self.info.category_active,
        }

    def next_expiry(self) -> datetime | None:
        while self._expiry_heap and self._expiry_heap[0][1] not in self.holds:
            heapq.heappop(self._expiry_heap)
        return self._expiry_heap[0][0] if self._expiry_heap else None

    # -- batch bookkeeping --
    def buyers_touched(self, requests: list[Request], now: datetime) -> set[int]:
        """Every account whose seats in the event this batch may change (a superset): the callers, the
        owners of the holds of an ending session and of the holds due to expire. The actor locks their
        counts before deciding, in one statement in key order, so nothing else is locked afterwards."""
        users = {r.user_id for r in requests if not isinstance(r, ReleaseSessionRequest)}
        sessions = {r.session_id for r in requests if isinstance(r, ReleaseSessionRequest)}
        if sessions or ((due := self.next_expiry()) is not None and due <= now):  # else no hold to scan
            users.update(h.user_id for h in self.holds.values() if h.session_id in sessions or h.expires_at <= now)
        return users

    def allow(self, allowance: Allowance | None) -> None:
        """What each buyer of the coming batch may still take (None: no limit); ends with the batch."""
        self.allowance = allowance

    def take_changes(self) -> Changes:
        changes, self.changes = self.changes, Changes()
        self.allowance = None
        return changes

    def committed(self, changes: Changes) -> None:
        """The batch is durable: remember the orders it created (now that they have ids)."""
        for order in changes.new_orders:
            assert order.id is not None
            self.orders[order.id] = SoldOrder(order.id, order.user_id, order.quantity)

    # -- dispatch --
    def apply(self, request: Request, now: datetime) -> Outcome:
        handler = {
            HoldRequest: self.hold,
            ReleaseRequest: self.release,
            ReleaseSessionRequest: self.release_session,
            ConfirmRequest: self.confirm,
            PurchaseRequest: self.purchase,
            CancelRequest: self.cancel,
        }[type(request)]
        return handler(request, now)

    def refusal_lease(self, now: datetime, longest: float) -> RefusalLease | None:
        """The lease (at most `longest` seconds) a caller may take with answers decided at `now`: while
        the category refuses every purchase whoever asks (off sale, past, or sold out without a per-account
        ticket limit, whose refusal would depend on the buyer). A sold-out lease ends before the next hold
        expires and before the event starts."""
        closed = self._closed(now)
        seconds = longest
        if closed is None:
            if self.available > 0 or self.info.ticket_limit is not None:
                return None
            seconds = min(seconds, (self.info.event_date - now).total_seconds())
            if (due := self.next_expiry()) is not None:
                seconds = min(seconds, (due - now).total_seconds())
        if seconds <= 0:
            return None
        return RefusalLease(seconds, closed, self.max_per_order, holders=frozenset(self.hold_of_user))

    def selling(self, now: datetime) -> bool:
        """Can anyone hold or buy here now, seats permitting (not off sale, event not taken place)?"""
        return self._closed(now) is None

    # -- checks shared by holds and purchases --
    def _closed(self, now: datetime) -> Refusal | None:
        """Why nobody may hold or buy at all right now, if so."""
        if not self.info.event_active or not self.info.category_active:
            return Refusal.OFF_SALE
        if self.info.event_date <= now:
            return Refusal.EVENT_PAST
        return None

    def _sale_refusal(self, quantity: object, now: datetime) -> Outcome | None:
        if closed := self._closed(now):
            return refuse(closed)
        if type(quantity) is not int or not 1 <= quantity <= self.max_per_order:
            return refuse(Refusal.BAD_QUANTITY, limit=self.max_per_order)
        return None

    def _limit_refusal(self, user_id: int, quantity: int) -> Outcome | None:
        if self.allowance is None or self.allowance.fits(user_id, quantity):
            return None
        return refuse(Refusal.TICKET_LIMIT, self.available, self.allowance.limit)

    def _take_allowance(self, user_id: int, quantity: int) -> None:
        if self.allowance is not None:
            self.allowance.take(user_id, quantity)

    def _give_back_allowance(self, user_id: int, quantity: int) -> None:
        if self.allowance is not None:
            self.allowance.give_back(user_id, quantity)

    def _close_hold(self, hold: ActiveHold, status: HoldStatus) -> None:
        del self.holds[hold.id]
        del self.hold_of_user[hold.user_id]
        self.held -= hold.quantity
        if status != HoldStatus.CONFIRMED:  # a confirmed hold's seats move into its order
            self._give_back_allowance(hold.user_id, hold.quantity)
        if hold.id in self.changes.new_holds:  # created in this same batch: insert it closed
            self.changes.new_holds[hold.id] = (hold, status)
        else:
            self.changes.hold_status[hold.id] = status

    # -- operations --
    def hold(self, req: HoldRequest, now: datetime) -> Outcome:
        refusal = self._sale_refusal(req.quantity, now)
        if refusal:
            return refusal
        if req.user_id in self.hold_of_user:
            return refuse(Refusal.ALREADY_HOLDING, self.available)
        if refusal := self._limit_refusal(req.user_id, req.quantity):
            return refusal
        if req.quantity > self.available:
            return refuse(Refusal.NOT_ENOUGH_TO_HOLD, self.available)
        self._take_allowance(req.user_id, req.quantity)
        hold = ActiveHold(
            id=uuid.uuid4(),
            user_id=req.user_id,
            quantity=req.quantity,
            created_at=now,
            expires_at=now + timedelta(seconds=self.hold_seconds),
            session_id=req.session_id,
        )
        self.holds[hold.id] = hold
        self.hold_of_user[hold.user_id] = hold.id
        self.held += hold.quantity
        heapq.heappush(self._expiry_heap, (hold.expires_at, hold.id))
        self.changes.new_holds[hold.id] = (hold, HoldStatus.ACTIVE)
        return Outcome(hold=hold, available=self.available)

    def release(self, req: ReleaseRequest, now: datetime) -> Outcome:
        if req.hold_id is None:
            hold = self.holds.get(self.hold_of_user.get(req.user_id))
        else:
            hold = self.holds.get(req.hold_id)
        if hold is None or hold.user_id != req.user_id:
            return refuse(Refusal.NO_HOLD_TO_RELEASE, self.available)
        self._close_hold(hold, HoldStatus.RELEASED)
        return Outcome(released=hold.quantity, hold=hold, available=self.available)

    def release_session(self, req: ReleaseSessionRequest, now: datetime) -> Outcome:
        mine = [h for h in self.holds.values() if h.session_id == req.session_id]
        for hold in mine:
            self._close_hold(hold, HoldStatus.RELEASED)
        return Outcome(released=sum(h.quantity for h in mine), available=self.available)

    def expire_due(self, now: datetime) -> int:
        """Expire every hold whose time is up; returns the number of seats set free."""
        freed = 0
        while (due := self.next_expiry()) is not None and due <= now:
            _, hold_id = heapq.heappop(self._expiry_heap)
            hold = self.holds[hold_id]
            self._close_hold(hold, HoldStatus.EXPIRED)
            freed += hold.quantity
        return freed

    def _new_order(self, user_id: int, quantity: int, notes: str | None, hold_id: uuid.UUID | None,
                   idempotency_key: str | None) -> NewOrder:
        order = NewOrder(
            user_id=user_id,
            quantity=quantity,
            unit_price=self.info.price,
            event_name=self.info.event_name,
            category_name=self.info.category_name,
            notes=notes,
            hold_id=hold_id,
            idempotency_key=idempotency_key,
        )
        self.sold += quantity
        self.changes.new_orders.append(order)
        return order

    def confirm(self, req: ConfirmRequest, now: datetime) -> Outcome:
        hold = self.holds.get(req.hold_id)
        if hold is None or hold.user_id != req.user_id:
            return refuse(Refusal.INVALID_HOLD)
        if hold.expires_at <= now:
            self._close_hold(hold, HoldStatus.EXPIRED)
            return refuse(Refusal.INVALID_HOLD)
        refusal = self._sale_refusal(hold.quantity, now)
        if refusal:
            return refusal
        if req.quantity is not None and req.quantity != hold.quantity:
            return refuse(Refusal.QUANTITY_MISMATCH, limit=hold.quantity)
        self._close_hold(hold, HoldStatus.CONFIRMED)
        order = self._new_order(req.user_id, hold.quantity, req.notes, hold.id, req.idempotency_key)
        return Outcome(order=order, available=self.available)

    def purchase(self, req: PurchaseRequest, now: datetime) -> Outcome:
        refusal = self._sale_refusal(req.quantity, now)
        if refusal:
            return refusal
        if refusal := self._limit_refusal(req.user_id, req.quantity):
            return refusal
        if req.quantity > self.available:
            return refuse(Refusal.NOT_ENOUGH_TO_BUY, self.available)
        self._take_allowance(req.user_id, req.quantity)
        order = self._new_order(req.user_id, req.quantity, req.notes, None, req.idempotency_key)
        return Outcome(order=order, available=self.available)

    def cancel(self, req: CancelRequest, now: datetime) -> Outcome:
        order = self.orders.get(req.order_id)
        if order is None:
            return refuse(Refusal.NOT_CANCELLABLE)
        if order.user_id != req.user_id:
            return refuse(Refusal.NOT_YOUR_ORDER)
        if self.info.event_date <= now:  # the ticket has been used (or could have been): no refund now
            return refuse(Refusal.EVENT_PAST)
        del self.orders[order.id]
        self.sold -= order.quantity
        self._give_back_allowance(order.user_id, order.quantity)
        self.changes.cancelled_orders.append(order)
        return Outcome(released=order.quantity, available=self.available)
