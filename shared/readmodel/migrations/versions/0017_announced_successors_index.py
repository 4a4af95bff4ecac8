"""An index of the checkpoints that announce a successor key: the audit routes and every
signature ask for the newest one, which without it reads the whole checkpoint table.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    announced = sa.text("successor IS NOT NULL")
    op.create_index(
        "ix_audit_checkpoints_announced",
        "audit_checkpoints",
        ["position"],
        postgresql_where=announced,
        sqlite_where=announced,
    )


def downgrade() -> None:
    raise NotImplementedError("the read models are rebuilt from the events, not downgraded")
