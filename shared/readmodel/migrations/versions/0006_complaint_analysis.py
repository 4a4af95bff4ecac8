"""One row per complaint for the improvement reports; the summary projection fills it, so it
starts again from the first event (its other rows are rewritten as they are).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "complaint_analysis",
        sa.Column("complaint_id", sa.String(36), primary_key=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("business_type", sa.String(32), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("vip_tier", sa.String(16)),
        sa.Column("area", sa.String(32)),
        sa.Column("department", sa.String(128)),
        sa.Column("complexity", sa.String(16)),
        sa.Column("root_cause", sa.String(500)),
        sa.Column("upheld", sa.Boolean()),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("level", sa.String(32), nullable=False),
        sa.Column("repeat", sa.Boolean(), nullable=False),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("satisfaction", sa.String(32)),
        sa.Column("resolved", sa.Boolean()),
        sa.Column("unreached_callbacks", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("deadlines", sa.JSON(), nullable=False),
        sa.Column("timeline", sa.JSON(), nullable=False),
    )
    op.create_index("ix_analysis_accepted", "complaint_analysis", ["accepted_at"])
    op.execute("DELETE FROM projection_tracking WHERE name = 'complaint_summaries'")


def downgrade() -> None:
    op.drop_index("ix_analysis_accepted", table_name="complaint_analysis")
    op.drop_table("complaint_analysis")
