"""A checkpoint may announce the audit signing key's successor (key rotation): the successor's
public key, covered by the retiring key's signature.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_checkpoints") as batch_op:
        batch_op.add_column(sa.Column("successor", sa.Text(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the read models are rebuilt from the events, not downgraded")
