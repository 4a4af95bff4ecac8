"""Idempotency-Key answers are forgotten after a while: an index to find the old ones.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_idempotency_state_claimed", "idempotency_keys", ["state", "claimed_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_state_claimed", table_name="idempotency_keys")
