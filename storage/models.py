"""SQLAlchemy 2 typed declarative models.

The database guards the invariants on its own, whatever the application does:
- `ticket_categories`: held_seats + sold_seats <= total_seats, nothing negative (CHECK);
- the two counters are maintained by triggers from the rows of `holds` (active) and `orders`
  (confirmed or completed: `SOLD_STATUSES`), so they always equal what those rows say (see migration 0001);
- status changes of holds and orders are checked by triggers: a hold leaves `active` once, an order
  is cancelled once; `orders.hold_id` is UNIQUE, so a hold becomes an order at most once;
- one active hold per user and category (partial unique index).

The statuses and roles are the domain's enums (`domain/vocabulary.py`), stored by value.
"""
from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from domain.vocabulary import HoldStatus, OrderStatus, QueueStatus, Role


class Base(DeclarativeBase):
    pass


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """A PostgreSQL enum of the domain enum's values (not its member names), as migration 0001 made it."""
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e])


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"), server_default=Role.ASSISTANT.value)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    category: Mapped[str] = mapped_column(String(100), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    event_date: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    location: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    # Sale settings (migration 0003): all optional; without them the event sells at once, as before.
    sale_starts_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    queue_enabled: Mapped[bool] = mapped_column(server_default=text("false"))
    queue_paused: Mapped[bool] = mapped_column(server_default=text("false"))
    admission_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_shoppers: Mapped[int | None] = mapped_column(Integer)
    shopping_minutes: Mapped[int] = mapped_column(Integer, server_default=text("10"))
    ticket_limit: Mapped[int | None] = mapped_column(Integer)

    ticket_categories: Mapped[list["TicketCategory"]] = relationship(
        back_populates="event", order_by="TicketCategory.id", cascade="all, delete-orphan"
    )


class TicketCategory(Base):
    __tablename__ = "ticket_categories"
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("total_seats >= 0", name="total_seats_not_negative"),
        CheckConstraint("held_seats >= 0", name="held_seats_not_negative"),
        CheckConstraint("sold_seats >= 0", name="sold_seats_not_negative"),
        CheckConstraint("held_seats + sold_seats <= total_seats", name="never_oversold"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    total_seats: Mapped[int] = mapped_column(Integer)
    held_seats: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    sold_seats: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    description: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))

    event: Mapped[Event] = relationship(back_populates="ticket_categories")


class Hold(Base):
    """Seats set aside for one buyer until `expires_at` (the seed's "ticket lock")."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index(
            "one_active_hold_per_user_and_category",
            "category_id",
            "user_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
        Index("active_holds_by_category", "category_id", postgresql_where=text("status = 'active'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    category_id: Mapped[int] = mapped_column(ForeignKey("ticket_categories.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[HoldStatus] = mapped_column(_enum(HoldStatus, "hold_status"))
    session_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
        CheckConstraint("total_price = unit_price * quantity", name="total_is_unit_times_quantity"),
        UniqueConstraint("user_id", "idempotency_key", name="one_order_per_idempotency_key"),
        Index("orders_by_category_status", "category_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("ticket_categories.id", ondelete="CASCADE"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    total_price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    status: Mapped[OrderStatus] = mapped_column(_enum(OrderStatus, "order_status"))
    event_name: Mapped[str] = mapped_column(String(255))
    category_name: Mapped[str] = mapped_column(String(100))
    notes: Mapped[str | None] = mapped_column(Text)
    hold_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("holds.id"), unique=True
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class EventQueue(Base):
    """When the pre-queue of an event was drawn (put in a random order)."""

    __tablename__ = "event_queues"

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    drawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class QueueEntry(Base):
    """One account's place in an event's waiting room (migration 0003 guards its transitions)."""

    __tablename__ = "queue_entries"
    __table_args__ = (UniqueConstraint("event_id", "place", name="one_account_per_place"),)

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    arrival: Mapped[int] = mapped_column(BigInteger, Identity())
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    place: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[QueueStatus] = mapped_column(_enum(QueueStatus, "queue_status"),
                                                server_default=QueueStatus.WAITING.value)
    admitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pass_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BuyerTickets(Base):
    """Seats an account holds or has bought in an event, kept by triggers (the ticket limit's guard)."""

    __tablename__ = "buyer_tickets"

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    tickets: Mapped[int] = mapped_column(Integer, server_default=text("0"))
