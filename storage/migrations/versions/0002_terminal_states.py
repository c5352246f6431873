"""Closed holds and cancelled orders are final: any further update is refused.

0001 refused a *change* of status out of a closed state but let a no-op `SET status = 'cancelled'` on a
cancelled order through, which made a double cancel look successful at the database level (the seats
were still freed only once, since the counter triggers see no change).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE OR REPLACE FUNCTION holds_guard_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.category_id <> OLD.category_id OR NEW.user_id <> OLD.user_id
     OR NEW.quantity <> OLD.quantity OR NEW.event_id <> OLD.event_id THEN
    RAISE EXCEPTION 'hold % is immutable except for its status', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  IF OLD.status <> 'active' THEN
    RAISE EXCEPTION 'hold % is already %', OLD.id, OLD.status USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION orders_guard_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.category_id <> OLD.category_id OR NEW.user_id <> OLD.user_id
     OR NEW.quantity <> OLD.quantity OR NEW.event_id <> OLD.event_id THEN
    RAISE EXCEPTION 'order % is immutable except for its status', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  IF OLD.status = 'cancelled' THEN
    RAISE EXCEPTION 'order % is already cancelled', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.status <> OLD.status AND NOT (
       (OLD.status = 'pending' AND NEW.status IN ('confirmed', 'cancelled'))
    OR (OLD.status = 'confirmed' AND NEW.status IN ('cancelled', 'completed'))) THEN
    RAISE EXCEPTION 'order % cannot go from % to %', OLD.id, OLD.status, NEW.status
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
"""

DOWNGRADE = """
CREATE OR REPLACE FUNCTION holds_guard_transition() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION orders_guard_transition() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
