"""Messages by letter, phone or visit are tasks for staff: the notification index knows each
message's channel and whether staff carry it out, and summaries count the tasks still open.
The summary projection fills them again from the first event.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.add_column(
            sa.Column("channel", sa.String(16), nullable=False, server_default="sms")
        )
        batch_op.add_column(sa.Column("task", sa.Boolean(), nullable=False, server_default="0"))
    with op.batch_alter_table("complaint_summaries") as batch_op:
        batch_op.add_column(sa.Column("tasks", sa.Integer(), nullable=False, server_default="0"))
    op.execute("DELETE FROM projection_tracking WHERE name = 'complaint_summaries'")


def downgrade() -> None:
    raise NotImplementedError("the read models are rebuilt from the events, not downgraded")
