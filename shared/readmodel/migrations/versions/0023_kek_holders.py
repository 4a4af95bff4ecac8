"""Which KEKs each running process holds, so that a staged KEK is put in force only once every
live process can unwrap with it (shared.store.kek_holders).

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kek_holders",
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("kek_ids", sa.JSON(), nullable=False),
        sa.Column("in_force", sa.String(length=16), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("holder"),
    )


def downgrade() -> None:
    op.drop_table("kek_holders")
