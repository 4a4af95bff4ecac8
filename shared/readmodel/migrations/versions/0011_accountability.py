"""The improvement report counts refused complaints apart and holds each investigator to
account: the analysis rows carry the assigned investigator and the refusal reason. The summary
projection fills them again from the first event.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("complaint_analysis") as batch_op:
        batch_op.add_column(sa.Column("investigator", sa.String(200)))
        batch_op.add_column(sa.Column("refusal_reason", sa.String(32)))
    op.execute("DELETE FROM projection_tracking WHERE name = 'complaint_summaries'")


def downgrade() -> None:
    raise NotImplementedError("the read models are rebuilt from the events, not downgraded")
