"""Major incidents as things: one row per declared incident (`major_incidents`), and the
incident each complaint belongs to (`complaint_summaries.incident_id`). The summary projection
fills both, so it starts again from the first event.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "major_incidents",
        sa.Column("incident_id", sa.String(36), primary_key=True),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("area", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("declared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_member_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_member_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("escalated", sa.Integer(), nullable=False),
    )
    op.create_index("ix_incidents_newest", "major_incidents", ["declared_at", "incident_id"])
    op.create_index("ix_incidents_closing", "major_incidents", ["closes_at"])
    op.add_column("complaint_summaries", sa.Column("incident_id", sa.String(36)))
    op.execute("DELETE FROM projection_tracking WHERE name = 'complaint_summaries'")


def downgrade() -> None:
    raise NotImplementedError("the read models are rebuilt from the events, not downgraded")
