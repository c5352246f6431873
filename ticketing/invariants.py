"""The seat invariant of a ticket category, read straight from PostgreSQL: the one check that proves
nothing is oversold and that the category's counters (`held_seats`, `sold_seats` in ticket_categories)
equal the rows they count (active holds, sold orders).

Used by the tests, the benchmarks, the multi-node check and the rush driver (when it is given the
database). Takes a synchronous SQLAlchemy connection, so any caller with an engine can use it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import text

from domain.vocabulary import SOLD_STATUSES, HoldStatus

# What counts as sold (confirmed, or completed after the event) is the domain's one definition, the one
# the migration's trigger and the category actor's loader count too.
SOLD_ORDER_STATUSES = tuple(s.value for s in SOLD_STATUSES)
ACTIVE_HOLD_STATUS = HoldStatus.ACTIVE.value


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


# The statuses are constants of this module, written into the statement (no enum/text casts to mind).
LEDGER_SQL = text(
    "SELECT c.total_seats, c.held_seats, c.sold_seats,"
    " (SELECT coalesce(sum(h.quantity), 0) FROM holds h"
    f"   WHERE h.category_id = c.id AND h.status = '{ACTIVE_HOLD_STATUS}') AS held_rows,"
    " (SELECT coalesce(sum(o.quantity), 0) FROM orders o"
    f"   WHERE o.category_id = c.id AND o.status IN ({_sql_list(SOLD_ORDER_STATUSES)})) AS sold_rows "
    "FROM ticket_categories c WHERE c.id = :c"
)


@dataclass(frozen=True)
class SeatLedger:
    """A category's counters next to what its rows say, read in one statement."""

    total: int
    held: int        # ticket_categories.held_seats
    sold: int        # ticket_categories.sold_seats
    held_rows: int   # sum of the active holds' quantities
    sold_rows: int   # sum of the sold orders' quantities

    @property
    def oversold(self) -> int:
        """Seats taken beyond capacity, by the rows (0 unless something is badly wrong)."""
        return max(0, self.held_rows + self.sold_rows - self.total)

    @property
    def counters_match_rows(self) -> bool:
        return (self.held, self.sold) == (self.held_rows, self.sold_rows)

    @property
    def ok(self) -> bool:
        return self.oversold == 0 and self.counters_match_rows and min(self.held, self.sold) >= 0 \
            and self.held + self.sold <= self.total

    def counters(self) -> dict:
        return {"total": self.total, "held": self.held, "sold": self.sold}

    def rows(self) -> dict:
        return {"held": self.held_rows, "sold": self.sold_rows}

    def report(self) -> dict:
        """The benchmarks' form (bench/results JSON)."""
        return {"total_seats": self.total, "held_seats": self.held, "sold_seats": self.sold,
                "oversold": self.oversold, "counters_match_rows": self.counters_match_rows}

    def as_dict(self) -> dict:
        return {**asdict(self), "oversold": self.oversold, "countersMatchRows": self.counters_match_rows}


def seat_ledger(conn, category_id: int) -> SeatLedger:
    """The ledger of one category on `conn` (a synchronous SQLAlchemy Connection)."""
    row = conn.execute(LEDGER_SQL, {"c": category_id}).one()
    return SeatLedger(row.total_seats, row.held_seats, row.sold_seats, int(row.held_rows), int(row.sold_rows))


def read_seat_ledger(db, category_id: int) -> SeatLedger:
    """The ledger through a synchronous engine `db`."""
    with db.connect() as conn:
        return seat_ledger(conn, category_id)
