"""Request bodies, validated by pydantic at the gateway; field names are the seed's (camelCase).

Unknown keys in create/register bodies are ignored (seed clients send extras such as `email`), and
keys that name server-owned fields (`id`, `idEvent`, `createdBy`, `reservedSeats`, ...) are never read,
so a body cannot overwrite another row. Update bodies forbid unknown keys.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints, field_validator

from domain.vocabulary import MAX_ID, MAX_QUANTITY, ROLES, Role

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
ShortName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Id = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
# The role names as a Literal (a plain string enum in the OpenAPI document, as before), from the one Role enum.
RoleName = Literal[ROLES]  # type: ignore[valid-type]
Quantity = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY)]
MIN_YEAR, MAX_YEAR = 1900, 9998


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=10_000)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value):
        # PostgreSQL text cannot hold NUL: reject it here (400) instead of failing in the database (500).
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class RegisterBody(Body):
    username: ShortName
    password: Annotated[str, StringConstraints(min_length=8, max_length=128)]
    role: RoleName = Role.ASSISTANT.value


class LoginBody(Body):
    username: ShortName  # stripped as at registration: "alice " registered as "alice" logs in as it typed
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


def _utc(value: datetime) -> datetime:
    """Naive means UTC. Normalised to UTC and bounded, so PostgreSQL stores it and Python reads it back
    (year 1 at +05:00 is 1 BC in UTC: stored fine, then every read of the event list failed)."""
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        moment = aware.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("date out of range") from None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise ValueError(f"date must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return moment


class TicketCategoryBody(Body):
    categoryName: ShortName
    price: Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2, allow_inf_nan=False)]
    totalSeats: Annotated[StrictInt, Field(ge=0, le=1_000_000)]
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None


# Sale settings (the waiting room, docs/waiting-room.md): all optional.
PerMinute = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
Shoppers = Annotated[StrictInt, Field(ge=1, le=10_000_000)]
ShoppingMinutes = Annotated[StrictInt, Field(ge=1, le=24 * 60)]
TicketLimit = Annotated[StrictInt, Field(ge=1, le=10_000)]
SALE_FIELDS = ("saleStartsAt", "queueEnabled", "queuePaused", "admissionPerMinute", "maxShoppers",
               "shoppingMinutes", "ticketLimit")


class EventCreateBody(Body):
    eventName: Name
    eventCategory: ShortName
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    eventDate: datetime
    location: Name | None = None
    ticketCategories: Annotated[list[TicketCategoryBody], Field(max_length=50)] = []
    saleStartsAt: datetime | None = None
    queueEnabled: StrictBool = False
    queuePaused: StrictBool = False
    admissionPerMinute: PerMinute | None = None
    maxShoppers: Shoppers | None = None
    shoppingMinutes: ShoppingMinutes = 10
    ticketLimit: TicketLimit | None = None

    _utc_date = field_validator("eventDate")(_utc)

    @field_validator("saleStartsAt")
    @classmethod
    def _aware_start(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)


def _reject_null(cls, value):
    """A field that may be left out but not set to null (its column has no null)."""
    if value is None:
        raise ValueError("may not be null")
    return value


class EventUpdateBody(Body):
    model_config = ConfigDict(extra="forbid")
    eventName: Name | None = None
    eventCategory: ShortName | None = None
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    eventDate: datetime | None = None
    location: Name | None = None
    isActive: StrictBool | None = None
    # Sale settings; null clears saleStartsAt, admissionPerMinute, maxShoppers and ticketLimit.
    saleStartsAt: datetime | None = None
    queueEnabled: StrictBool | None = None
    queuePaused: StrictBool | None = None
    admissionPerMinute: PerMinute | None = None
    maxShoppers: Shoppers | None = None
    shoppingMinutes: ShoppingMinutes | None = None
    ticketLimit: TicketLimit | None = None

    _not_null = field_validator("eventName", "eventCategory", "eventDate", "isActive", "queueEnabled", "queuePaused",
                                "shoppingMinutes", mode="before")(_reject_null)

    @field_validator("eventDate", "saleStartsAt")
    @classmethod
    def _aware_date(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)


class QueueControlBody(Body):
    """PATCH /api/events/:id/queue: an operator's live controls (any subset)."""

    model_config = ConfigDict(extra="forbid")
    queuePaused: StrictBool | None = None
    admissionPerMinute: PerMinute | None = None
    maxShoppers: Shoppers | None = None

    _not_null = field_validator("queuePaused", mode="before")(_reject_null)  # null pauses nothing: 400, not 500


class HoldBody(Body):
    eventId: Id
    categoryId: Id
    quantity: Quantity


class ReleaseBody(Body):
    """Seed `/events/tickets/release`: releases the caller's own hold in the category."""

    categoryId: Id
    eventId: Id | None = None
    quantity: Quantity | None = None


class OrderBody(Body):
    eventId: Id
    categoryId: Id
    quantity: Quantity
    notes: Annotated[str, StringConstraints(max_length=2000)] | None = None


class OrderWithLockBody(OrderBody):
    lockId: str | None = None
