"""Deadlines say whether they were counted on an official holiday schedule or an estimate, so
that the escalation service finds those to count again when a policy brings the official one.
The summary projection fills the column again from the first event.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deadlines") as batch_op:
        batch_op.add_column(
            sa.Column("calendar", sa.String(16), nullable=False, server_default="official")
        )
    op.create_index("ix_deadlines_calendar", "deadlines", ["calendar", "policy_version"])
    op.execute("DELETE FROM projection_tracking WHERE name = 'complaint_summaries'")


def downgrade() -> None:
    raise NotImplementedError("the read models are rebuilt from the events, not downgraded")
