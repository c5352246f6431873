"""The shared vocabulary (domain/vocabulary.py): the enums keep the database's values, and the figures
have one formula."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from domain.vocabulary import (
    MAX_ID,
    ROLES,
    SOLD_STATUSES,
    SOLD_STATUSES_SQL,
    CategoryFigures,
    HoldStatus,
    OrderStatus,
    Role,
    available_seats,
)

MIGRATION = Path(__file__).resolve().parents[2] / "storage" / "migrations" / "versions" / "0001_initial.py"


def _migration():
    spec = importlib.util.spec_from_file_location("initial_migration", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("enum_name, domain_enum", [
    ("ROLE", Role), ("HOLD_STATUS", HoldStatus), ("ORDER_STATUS", OrderStatus)])
def test_enums_keep_the_database_values(enum_name, domain_enum):
    assert [m.value for m in domain_enum] == list(getattr(_migration(), enum_name).enums)


def test_models_store_the_domain_enums_by_value():
    from storage.models import Hold, Order, User

    for column, domain_enum in ((User.role, Role), (Hold.status, HoldStatus), (Order.status, OrderStatus)):
        assert column.type.enum_class is domain_enum
        assert column.type.enums == [m.value for m in domain_enum]


def test_sold_is_confirmed_or_completed_as_the_trigger_counts():
    assert SOLD_STATUSES == (OrderStatus.CONFIRMED, OrderStatus.COMPLETED)
    assert SOLD_STATUSES_SQL == "('confirmed', 'completed')"
    assert f"status IN {SOLD_STATUSES_SQL}" in MIGRATION.read_text()


def test_roles_and_limits():
    assert ROLES == ("assistant", "organizer")
    assert MAX_ID == 2**31 - 1


@pytest.mark.parametrize("total, sold, held, available", [(10, 3, 2, 5), (10, 10, 0, 0), (5, 4, 3, 0), (0, 0, 0, 0)])
def test_available_seats_never_below_zero(total, sold, held, available):
    assert available_seats(total, sold, held) == available
    assert CategoryFigures(total=total, sold=sold, held=held).available == available


def test_figures_are_frozen():
    figures = CategoryFigures(10, 1, 1)
    with pytest.raises(AttributeError):
        figures.sold = 2
