"""An event whose queue is on has a way in: an admission rate, a cap on shoppers, or both.

The edge checks this rule (`domain.sale.check_sale_settings`) against the event as it read it, so two
organizer edits at once (`queueEnabled: true` and `admissionPerMinute: null`, each fine alone) could
together leave a queue that admits nobody, for good. The database now refuses the second write.
`NOT VALID`: rows written before are not checked (only that race could have made one).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE events ADD CONSTRAINT queue_has_a_way_in "
               "CHECK (NOT queue_enabled OR admission_per_minute IS NOT NULL OR max_shoppers IS NOT NULL) NOT VALID")


def downgrade() -> None:
    op.execute("ALTER TABLE events DROP CONSTRAINT queue_has_a_way_in")
