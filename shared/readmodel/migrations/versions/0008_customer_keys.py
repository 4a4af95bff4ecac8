"""Per-customer keys for personal data, and what erasure needs to find.

- `customer_keys`: each customer's AES-GCM key and salt (at most one live key per customer);
  erasure deletes the row.
- `customer_complaints`: which customer each complaint belongs to and the key it was accepted
  under, written as its acceptance is sealed (before the read models know it).
- `idempotency_keys.complaint_id`: stored answers hold the complaint's personal data; erasure
  forgets them by it.
- `personal_salts` goes: salts now belong to the customer's key and die with it.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Stores written before this revision hold personal data in plaintext in their events,
    # which an append-only store cannot rewrite. They were pre-release: start a new one.
    if op.get_bind().execute(sa.text("SELECT 1 FROM complaint_summaries LIMIT 1")).first():
        raise RuntimeError(
            "This store holds complaints recorded before personal data was encrypted; there is "
            "no upgrade path from that pre-release format. Set up a new database (for "
            "`make run`: delete ./var)."
        )
    op.create_table(
        "customer_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False, unique=True),
        sa.Column("secret", sa.LargeBinary, nullable=False),
        sa.Column("salt", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "customer_complaints",
        sa.Column("complaint_id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("bound_at", sa.Float, nullable=False),
        sa.Index("ix_customer_complaints_customer", "customer_id"),
    )
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("complaint_id", sa.String(36)))
    op.create_index("ix_idempotency_complaint", "idempotency_keys", ["complaint_id"])
    op.drop_table("personal_salts")


def downgrade() -> None:
    op.create_table(
        "personal_salts",
        sa.Column("complaint_id", sa.String(36), primary_key=True),
        sa.Column("salt", sa.String(64), nullable=False),
    )
    op.drop_index("ix_idempotency_complaint", table_name="idempotency_keys")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("complaint_id")
    op.drop_table("customer_complaints")
    op.drop_table("customer_keys")
