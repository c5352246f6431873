"""The on-sale waiting room: sale settings per event, queue places and admissions, and a per-account
ticket limit per event, each with the guards that keep it honest whatever the application does.

- `events` gains its sale settings (all optional; an event without them sells at once, as before).
- `queue_entries`: one row per (event, account), so nobody holds two places. `place` is NULL while the
  buyer waits in the pre-queue and is set once (at the draw, or at joining after it), unique per event.
  A place moves `waiting` → `admitted` → `expired` only, and a place is admitted only when no lower place
  still waits: nobody is admitted twice, skipped or out of order.
- `event_queues`: when the pre-queue of an event was drawn (shuffled into places).
- `buyer_tickets`: the seats each account holds or has bought per event, kept by triggers from the rows
  of holds and orders like the category counters. An increase past the event's `ticket_limit` is
  refused (constraint name `ticket_limit_per_account`); a hold that becomes an order moves its seats,
  it does not count them twice.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

QUEUE_STATUS = postgresql.ENUM("waiting", "admitted", "expired", name="queue_status", create_type=False)

QUEUE_GUARDS = """
CREATE FUNCTION queue_entries_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.event_id <> OLD.event_id OR NEW.user_id <> OLD.user_id OR NEW.arrival <> OLD.arrival THEN
    RAISE EXCEPTION 'queue entry is immutable except for its place and status' USING ERRCODE = 'check_violation';
  END IF;
  IF OLD.place IS NOT NULL AND NEW.place IS DISTINCT FROM OLD.place THEN
    RAISE EXCEPTION 'a queue place is given once' USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.status <> OLD.status AND NOT (
       (OLD.status = 'waiting' AND NEW.status = 'admitted')
    OR (OLD.status = 'admitted' AND NEW.status = 'expired')) THEN
    RAISE EXCEPTION 'queue entry cannot go from % to %', OLD.status, NEW.status
      USING ERRCODE = 'check_violation', CONSTRAINT = 'queue_admitted_once';
  END IF;
  RETURN NEW;
END $$;

-- After the statement (AFTER ROW triggers run at its end and see all of it): an admitted place must
-- have no lower place still waiting, and nobody is admitted while the pre-queue is not drawn.
CREATE FUNCTION queue_entries_in_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'admitted' AND OLD.status = 'waiting' AND EXISTS (
       SELECT 1 FROM queue_entries q
       WHERE q.event_id = NEW.event_id AND q.status = 'waiting' AND (q.place IS NULL OR q.place < NEW.place)) THEN
    RAISE EXCEPTION 'place % of event % admitted out of order', NEW.place, NEW.event_id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'queue_admitted_in_order';
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER queue_entries_guard BEFORE UPDATE ON queue_entries
  FOR EACH ROW EXECUTE FUNCTION queue_entries_guard();
CREATE TRIGGER queue_entries_in_order AFTER UPDATE ON queue_entries
  FOR EACH ROW EXECUTE FUNCTION queue_entries_in_order();
"""

# One function applies the per-(event, account) deltas of a statement; the six triggers compute them
# from their transition tables. Rows are upserted in key order, so concurrent writers cannot deadlock.
BUYER_TICKETS = """
CREATE FUNCTION buyer_ticket_deltas(deltas jsonb) RETURNS TABLE (event_id int, user_id int, delta int)
LANGUAGE sql IMMUTABLE AS $$
  SELECT (x->>'e')::int, (x->>'u')::int, sum((x->>'d')::int)::int FROM jsonb_array_elements(deltas) x
  GROUP BY 1, 2 HAVING sum((x->>'d')::int) <> 0 ORDER BY 1, 2
$$;

CREATE FUNCTION buyer_tickets_apply(deltas jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE over_limit int;
BEGIN
  IF deltas = '[]'::jsonb THEN
    RETURN;
  END IF;
  -- A CHECK is tested on the row an INSERT proposes even when it conflicts, so rows are made at 0,
  -- then locked in key order (no deadlock between writers) and changed.
  INSERT INTO buyer_tickets (event_id, user_id, tickets)
  SELECT d.event_id, d.user_id, 0 FROM buyer_ticket_deltas(deltas) d
  ON CONFLICT (event_id, user_id) DO NOTHING;
  PERFORM 1 FROM buyer_tickets b JOIN buyer_ticket_deltas(deltas) d USING (event_id, user_id)
  ORDER BY b.event_id, b.user_id FOR UPDATE OF b;
  UPDATE buyer_tickets b SET tickets = b.tickets + d.delta
  FROM buyer_ticket_deltas(deltas) d WHERE b.event_id = d.event_id AND b.user_id = d.user_id;
  SELECT count(*) INTO over_limit
  FROM buyer_tickets b JOIN buyer_ticket_deltas(deltas) d USING (event_id, user_id) JOIN events e ON e.id = b.event_id
  WHERE d.delta > 0 AND e.ticket_limit IS NOT NULL AND b.tickets > e.ticket_limit;
  IF over_limit > 0 THEN
    RAISE EXCEPTION 'an account would pass the ticket limit of its event'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ticket_limit_per_account';
  END IF;
END $$;

-- A hold written already confirmed (held and bought in one batch) counts too: its order, inserted with
-- it, subtracts the hold's seats as for any order made from a hold.
CREATE FUNCTION buyer_tickets_holds_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM buyer_tickets_apply(coalesce((SELECT jsonb_agg(jsonb_build_object(
    'e', event_id, 'u', user_id, 'd', quantity)) FROM new_rows WHERE status IN ('active', 'confirmed')), '[]'));
  RETURN NULL;
END $$;

-- active -> confirmed moves the seats into the order (counted there), so it changes nothing here.
CREATE FUNCTION buyer_tickets_holds_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM buyer_tickets_apply(coalesce((SELECT jsonb_agg(jsonb_build_object('e', n.event_id, 'u', n.user_id, 'd',
      (CASE WHEN n.status = 'active' THEN n.quantity ELSE 0 END)
    - (CASE WHEN o.status = 'active' AND n.status <> 'confirmed' THEN o.quantity ELSE 0 END)))
    FROM new_rows n JOIN old_rows o ON o.id = n.id), '[]'));
  RETURN NULL;
END $$;

CREATE FUNCTION buyer_tickets_holds_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM buyer_tickets_apply(coalesce((SELECT jsonb_agg(jsonb_build_object(
    'e', event_id, 'u', user_id, 'd', -quantity)) FROM old_rows WHERE status = 'active'), '[]'));
  RETURN NULL;
END $$;

-- An order made from a hold adds only what it takes beyond the hold's seats.
CREATE FUNCTION buyer_tickets_orders_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM buyer_tickets_apply(coalesce((SELECT jsonb_agg(jsonb_build_object('e', n.event_id, 'u', n.user_id,
      'd', n.quantity - coalesce(h.quantity, 0)))
    FROM new_rows n LEFT JOIN holds h ON h.id = n.hold_id
    WHERE n.status IN ('confirmed', 'completed')), '[]'));
  RETURN NULL;
END $$;

CREATE FUNCTION buyer_tickets_orders_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM buyer_tickets_apply(coalesce((SELECT jsonb_agg(jsonb_build_object('e', n.event_id, 'u', n.user_id, 'd',
      (CASE WHEN n.status IN ('confirmed', 'completed') THEN n.quantity ELSE 0 END)
    - (CASE WHEN o.status IN ('confirmed', 'completed') THEN o.quantity ELSE 0 END)))
    FROM new_rows n JOIN old_rows o ON o.id = n.id), '[]'));
  RETURN NULL;
END $$;

CREATE FUNCTION buyer_tickets_orders_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM buyer_tickets_apply(coalesce((SELECT jsonb_agg(jsonb_build_object(
    'e', event_id, 'u', user_id, 'd', -quantity)) FROM old_rows
    WHERE status IN ('confirmed', 'completed')), '[]'));
  RETURN NULL;
END $$;

CREATE TRIGGER buyer_tickets_holds_insert AFTER INSERT ON holds REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION buyer_tickets_holds_insert();
CREATE TRIGGER buyer_tickets_holds_update AFTER UPDATE ON holds
  REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION buyer_tickets_holds_update();
CREATE TRIGGER buyer_tickets_holds_delete AFTER DELETE ON holds REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION buyer_tickets_holds_delete();
CREATE TRIGGER buyer_tickets_orders_insert AFTER INSERT ON orders REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION buyer_tickets_orders_insert();
CREATE TRIGGER buyer_tickets_orders_update AFTER UPDATE ON orders
  REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION buyer_tickets_orders_update();
CREATE TRIGGER buyer_tickets_orders_delete AFTER DELETE ON orders REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION buyer_tickets_orders_delete();
"""

# The counts of the rows that exist when this migration runs.
BACKFILL = """
INSERT INTO buyer_tickets (event_id, user_id, tickets)
SELECT event_id, user_id, sum(quantity) FROM (
  SELECT event_id, user_id, quantity FROM holds WHERE status = 'active'
  UNION ALL
  SELECT o.event_id, o.user_id, o.quantity - coalesce(h.quantity, 0)
  FROM orders o LEFT JOIN holds h ON h.id = o.hold_id AND h.status = 'active'
  WHERE o.status IN ('confirmed', 'completed')) seats
GROUP BY event_id, user_id HAVING sum(quantity) > 0;
"""

FUNCTIONS = ("queue_entries_guard", "queue_entries_in_order", "buyer_tickets_holds_insert",
             "buyer_tickets_holds_update", "buyer_tickets_holds_delete", "buyer_tickets_orders_insert",
             "buyer_tickets_orders_update", "buyer_tickets_orders_delete")


def upgrade() -> None:
    op.add_column("events", sa.Column("sale_starts_at", sa.DateTime(timezone=True)))
    op.add_column("events", sa.Column("queue_enabled", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("events", sa.Column("queue_paused", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("events", sa.Column("admission_per_minute", sa.Integer))
    op.add_column("events", sa.Column("max_shoppers", sa.Integer))
    op.add_column("events", sa.Column("shopping_minutes", sa.Integer, nullable=False, server_default=sa.text("10")))
    op.add_column("events", sa.Column("ticket_limit", sa.Integer))
    op.create_check_constraint("admission_per_minute_positive", "events", "admission_per_minute > 0")
    op.create_check_constraint("max_shoppers_positive", "events", "max_shoppers > 0")
    op.create_check_constraint("shopping_minutes_positive", "events", "shopping_minutes > 0")
    op.create_check_constraint("ticket_limit_positive", "events", "ticket_limit > 0")

    QUEUE_STATUS.create(op.get_bind(), checkfirst=True)
    op.create_table(
        "event_queues",
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("drawn_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "queue_entries",
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("arrival", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("place", sa.Integer),
        sa.Column("status", QUEUE_STATUS, nullable=False, server_default="waiting"),
        sa.Column("admitted_at", sa.DateTime(timezone=True)),
        sa.Column("pass_expires_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("event_id", "place", name="one_account_per_place"),
        sa.CheckConstraint("place > 0", name="place_positive"),
        sa.CheckConstraint(
            "status = 'waiting' OR (place IS NOT NULL AND admitted_at IS NOT NULL AND pass_expires_at IS NOT NULL)",
            name="admitted_with_place_and_pass",
        ),
    )
    op.create_table(
        "buyer_tickets",
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("tickets", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.CheckConstraint("tickets >= 0", name="tickets_not_negative"),
    )
    op.execute(QUEUE_GUARDS)
    op.execute(BUYER_TICKETS)
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_table("buyer_tickets")
    op.drop_table("queue_entries")
    op.drop_table("event_queues")
    for name in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.execute("DROP FUNCTION IF EXISTS buyer_tickets_apply(jsonb)")
    op.execute("DROP FUNCTION IF EXISTS buyer_ticket_deltas(jsonb)")
    QUEUE_STATUS.drop(op.get_bind(), checkfirst=True)
    for name in ("admission_per_minute_positive", "max_shoppers_positive", "shopping_minutes_positive",
                 "ticket_limit_positive"):
        op.drop_constraint(name, "events", type_="check")
    for column in ("sale_starts_at", "queue_enabled", "queue_paused", "admission_per_minute", "max_shoppers",
                   "shopping_minutes", "ticket_limit"):
        op.drop_column("events", column)
