"""Users, events, ticket categories, holds and orders, with the guards that keep inventory honest.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ROLE = postgresql.ENUM("assistant", "organizer", name="user_role", create_type=False)
HOLD_STATUS = postgresql.ENUM("active", "confirmed", "released", "expired", name="hold_status", create_type=False)
ORDER_STATUS = postgresql.ENUM(
    "pending", "confirmed", "cancelled", "completed", name="order_status", create_type=False
)

# held_seats / sold_seats follow the rows of holds and orders. Statement-level triggers with transition
# tables add one aggregated UPDATE per category per statement, so a batch of 200 holds costs one update.
COUNTER_TRIGGERS = """
CREATE FUNCTION holds_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ticket_categories c SET held_seats = c.held_seats + d.delta
  FROM (SELECT category_id, sum(quantity) AS delta FROM new_rows
        WHERE status = 'active' GROUP BY category_id) d
  WHERE c.id = d.category_id;
  RETURN NULL;
END $$;

CREATE FUNCTION holds_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ticket_categories c SET held_seats = c.held_seats + d.delta
  FROM (SELECT n.category_id,
               sum(CASE WHEN n.status = 'active' THEN n.quantity ELSE 0 END)
             - sum(CASE WHEN o.status = 'active' THEN o.quantity ELSE 0 END) AS delta
        FROM new_rows n JOIN old_rows o ON o.id = n.id GROUP BY n.category_id) d
  WHERE c.id = d.category_id AND d.delta <> 0;
  RETURN NULL;
END $$;

CREATE FUNCTION holds_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ticket_categories c SET held_seats = c.held_seats - d.delta
  FROM (SELECT category_id, sum(quantity) AS delta FROM old_rows
        WHERE status = 'active' GROUP BY category_id) d
  WHERE c.id = d.category_id;
  RETURN NULL;
END $$;

CREATE FUNCTION orders_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ticket_categories c SET sold_seats = c.sold_seats + d.delta
  FROM (SELECT category_id, sum(quantity) AS delta FROM new_rows
        WHERE status IN ('confirmed', 'completed') GROUP BY category_id) d
  WHERE c.id = d.category_id;
  RETURN NULL;
END $$;

CREATE FUNCTION orders_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ticket_categories c SET sold_seats = c.sold_seats + d.delta
  FROM (SELECT n.category_id,
               sum(CASE WHEN n.status IN ('confirmed', 'completed') THEN n.quantity ELSE 0 END)
             - sum(CASE WHEN o.status IN ('confirmed', 'completed') THEN o.quantity ELSE 0 END) AS delta
        FROM new_rows n JOIN old_rows o ON o.id = n.id GROUP BY n.category_id) d
  WHERE c.id = d.category_id AND d.delta <> 0;
  RETURN NULL;
END $$;

CREATE FUNCTION orders_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ticket_categories c SET sold_seats = c.sold_seats - d.delta
  FROM (SELECT category_id, sum(quantity) AS delta FROM old_rows
        WHERE status IN ('confirmed', 'completed') GROUP BY category_id) d
  WHERE c.id = d.category_id;
  RETURN NULL;
END $$;

CREATE TRIGGER holds_count_insert AFTER INSERT ON holds REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION holds_count_insert();
CREATE TRIGGER holds_count_update AFTER UPDATE ON holds
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION holds_count_update();
CREATE TRIGGER holds_count_delete AFTER DELETE ON holds REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION holds_count_delete();
CREATE TRIGGER orders_count_insert AFTER INSERT ON orders REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION orders_count_insert();
CREATE TRIGGER orders_count_update AFTER UPDATE ON orders
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION orders_count_update();
CREATE TRIGGER orders_count_delete AFTER DELETE ON orders REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION orders_count_delete();
"""

# Legal status changes. Anything else (confirming a hold twice, cancelling twice, reviving a
# cancelled order, moving a hold to another category) is refused by the database itself.
TRANSITION_TRIGGERS = """
CREATE FUNCTION holds_guard_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.category_id <> OLD.category_id OR NEW.user_id <> OLD.user_id
     OR NEW.quantity <> OLD.quantity OR NEW.event_id <> OLD.event_id THEN
    RAISE EXCEPTION 'hold % is immutable except for its status', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.status <> OLD.status AND OLD.status <> 'active' THEN
    RAISE EXCEPTION 'hold % is already %', OLD.id, OLD.status USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE FUNCTION orders_guard_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.category_id <> OLD.category_id OR NEW.user_id <> OLD.user_id
     OR NEW.quantity <> OLD.quantity OR NEW.event_id <> OLD.event_id THEN
    RAISE EXCEPTION 'order % is immutable except for its status', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.status <> OLD.status AND NOT (
       (OLD.status = 'pending' AND NEW.status IN ('confirmed', 'cancelled'))
    OR (OLD.status = 'confirmed' AND NEW.status IN ('cancelled', 'completed'))) THEN
    RAISE EXCEPTION 'order % cannot go from % to %', OLD.id, OLD.status, NEW.status
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER holds_guard_transition BEFORE UPDATE ON holds
  FOR EACH ROW EXECUTE FUNCTION holds_guard_transition();
CREATE TRIGGER orders_guard_transition BEFORE UPDATE ON orders
  FOR EACH ROW EXECUTE FUNCTION orders_guard_transition();
"""


def upgrade() -> None:
    bind = op.get_bind()
    for enum in (ROLE, HOLD_STATUS, ORDER_STATUS):
        enum.create(bind, checkfirst=True)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(100), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", ROLE, nullable=False, server_default="assistant"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("category", sa.String(100), nullable=False, index=True),
        sa.Column("description", sa.Text),
        sa.Column("event_date", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("location", sa.String(255)),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("created_by", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "ticket_categories",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("price", sa.Numeric(10, 2), nullable=False),
        sa.Column("total_seats", sa.Integer, nullable=False),
        sa.Column("held_seats", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("sold_seats", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("description", sa.Text),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.CheckConstraint("price >= 0", name="price_not_negative"),
        sa.CheckConstraint("total_seats >= 0", name="total_seats_not_negative"),
        sa.CheckConstraint("held_seats >= 0", name="held_seats_not_negative"),
        sa.CheckConstraint("sold_seats >= 0", name="sold_seats_not_negative"),
        sa.CheckConstraint("held_seats + sold_seats <= total_seats", name="never_oversold"),
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
        sa.Column("category_id", sa.Integer, sa.ForeignKey("ticket_categories.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("status", HOLD_STATUS, nullable=False),
        sa.Column("session_id", sa.String(100)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    )
    op.create_index(
        "one_active_hold_per_user_and_category", "holds", ["category_id", "user_id"],
        unique=True, postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "active_holds_by_category", "holds", ["category_id"], postgresql_where=sa.text("status = 'active'")
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("category_id", sa.Integer, sa.ForeignKey("ticket_categories.id", ondelete="CASCADE"), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", sa.Numeric(10, 2), nullable=False),
        sa.Column("total_price", sa.Numeric(12, 2), nullable=False),
        sa.Column("status", ORDER_STATUS, nullable=False),
        sa.Column("event_name", sa.String(255), nullable=False),
        sa.Column("category_name", sa.String(100), nullable=False),
        sa.Column("notes", sa.Text),
        sa.Column("hold_id", sa.Uuid, sa.ForeignKey("holds.id"), unique=True),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
        sa.CheckConstraint("total_price = unit_price * quantity", name="total_is_unit_times_quantity"),
        sa.UniqueConstraint("user_id", "idempotency_key", name="one_order_per_idempotency_key"),
    )
    op.create_index("orders_by_category_status", "orders", ["category_id", "status"])
    op.execute(COUNTER_TRIGGERS)
    op.execute(TRANSITION_TRIGGERS)


def downgrade() -> None:
    op.drop_table("orders")
    op.drop_table("holds")
    op.drop_table("ticket_categories")
    op.drop_table("events")
    op.drop_table("users")
    for name in ("holds_count_insert", "holds_count_update", "holds_count_delete",
                 "orders_count_insert", "orders_count_update", "orders_count_delete",
                 "holds_guard_transition", "orders_guard_transition"):
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    bind = op.get_bind()
    for enum in (ORDER_STATUS, HOLD_STATUS, ROLE):
        enum.drop(bind, checkfirst=True)
