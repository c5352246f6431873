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

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
ShortName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Id = Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]
Quantity = Annotated[StrictInt, Field(ge=1, le=1000)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=10_000)


class RegisterBody(Body):
    username: ShortName
    password: Annotated[str, StringConstraints(min_length=8, max_length=128)]
    role: Literal["assistant", "organizer"] = "assistant"


class LoginBody(Body):
    username: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class TicketCategoryBody(Body):
    categoryName: ShortName
    price: Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2, allow_inf_nan=False)]
    totalSeats: Annotated[StrictInt, Field(ge=0, le=1_000_000)]
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None


class EventCreateBody(Body):
    eventName: Name
    eventCategory: ShortName
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    eventDate: datetime
    location: Name | None = None
    ticketCategories: Annotated[list[TicketCategoryBody], Field(max_length=50)] = []

    _aware = field_validator("eventDate")(_aware)


class EventUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eventName: Name | None = None
    eventCategory: ShortName | None = None
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    eventDate: datetime | None = None
    location: Name | None = None
    isActive: StrictBool | None = None

    @field_validator("eventName", "eventCategory", "eventDate", "isActive", mode="before")
    @classmethod
    def _not_null(cls, value):
        if value is None:
            raise ValueError("may not be null")
        return value

    @field_validator("eventDate")
    @classmethod
    def _aware_date(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _aware(value)


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
