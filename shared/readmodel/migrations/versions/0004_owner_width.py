"""Owners are staff ids, which are tokens' subjects: up to 200 characters.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("complaint_summaries") as batch_op:
        batch_op.alter_column(
            "owner",
            existing_type=sa.String(length=128),
            type_=sa.String(length=200),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("complaint_summaries") as batch_op:
        batch_op.alter_column(
            "owner",
            existing_type=sa.String(length=200),
            type_=sa.String(length=128),
            existing_nullable=False,
        )
