"""The audit chain keeps each event's masked export line (without its hashes): the export for
the roles that do not see personal data streams it instead of reading and decoding the events.

Rows chained before this migration keep it null: the export computes their lines as before,
row by row, and `make rebuild` fills them.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_chain") as batch_op:
        batch_op.add_column(sa.Column("masked_line", sa.Text(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the read models are rebuilt from the events, not downgraded")
