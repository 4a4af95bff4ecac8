"""A limit may open more than once (a second callback after a second reply) and may be closed
without being met: deadlines are keyed by `key`, with `closed_at` and `paused`. The summary
projection fills the table again from the first event.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deadlines_open_due", table_name="deadlines")
    op.drop_table("deadlines")
    op.create_table(
        "deadlines",
        sa.Column("complaint_id", sa.String(36), primary_key=True),
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("met_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("escalated_at", sa.DateTime(timezone=True)),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("policy_version", sa.String(64)),
    )
    op.create_index("ix_deadlines_open_due", "deadlines", ["met_at", "closed_at", "due_at"])
    op.execute("DELETE FROM projection_tracking WHERE name = 'complaint_summaries'")


def downgrade() -> None:
    raise NotImplementedError("the read models are rebuilt from the events, not downgraded")
