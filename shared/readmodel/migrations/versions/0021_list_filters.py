"""`GET /complaints` filters on more of a complaint, each by an index: department, investigator,
escalation level, VIP tier, the acceptance number without dashes, the contact phone and the
service number (by keyed digests, never the numbers), and the earliest due time of the limits
still counting (for `due_before` and `sort=due`). The summary projection fills the new columns,
so it starts again from the first event; the acceptance number's is filled here as well, so a
lookup by acceptance number keeps finding every complaint while it does.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_summaries_department": ["department", "accepted_at"],
    "ix_summaries_investigator": ["investigator", "accepted_at"],
    "ix_summaries_level": ["level", "accepted_at"],
    "ix_summaries_vip_tier": ["vip_tier", "accepted_at"],
    "ix_summaries_acceptance_key": ["acceptance_key"],
    "ix_summaries_phone": ["phone_digest"],
    "ix_summaries_service_number": ["service_digest"],
    "ix_summaries_next_due": ["next_due_at", "complaint_id"],
}


def upgrade() -> None:
    with op.batch_alter_table("complaint_summaries") as batch_op:
        batch_op.add_column(sa.Column("investigator", sa.String(200)))
        batch_op.add_column(
            sa.Column("acceptance_key", sa.String(32), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("phone_digest", sa.String(64)))
        batch_op.add_column(sa.Column("service_digest", sa.String(64)))
        batch_op.add_column(sa.Column("next_due_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE complaint_summaries SET acceptance_key = REPLACE(acceptance_no, '-', '')")
    for name, columns in INDEXES.items():
        op.create_index(name, "complaint_summaries", columns)
    op.execute("DELETE FROM projection_tracking WHERE name = 'complaint_summaries'")


def downgrade() -> None:
    raise NotImplementedError("the read models are rebuilt from the events, not downgraded")
