"""Customer keys move to the key store: each one wrapped by a key-encryption key (KEK) kept
outside the database (see `shared.store.keystore`).

- `wrapped_keys`: each customer's key and salt, sealed with AES-256-GCM under a KEK, and the id
  of that KEK (a rotation finds the keys it has yet to re-wrap by it).
- The keys of `customer_keys` (in plaintext) are wrapped under the current KEK, which the setup
  step hands in, and the table goes. The setup step then scrubs the database file (SQLite:
  VACUUM and a truncating WAL checkpoint), so no plaintext key is left in it.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from shared.store.keystore import CustomerKey, Kek

    op.create_table(
        "wrapped_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False, unique=True),
        sa.Column("kek_id", sa.String(16), nullable=False),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Index("ix_wrapped_keys_kek", "kek_id"),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT key_id, customer_id, secret, salt, created_at FROM customer_keys")
    ).all()
    if rows:
        kek = context.config.attributes.get("kek")
        if not isinstance(kek, Kek):
            raise RuntimeError(
                "this store's customer keys must be wrapped by a key-encryption key: run the "
                "setup step (`python -m shared.cli.setup_store`) with COMPLAINTS_KEK_PATH set"
            )
        wrapped = sa.table(
            "wrapped_keys",
            *(sa.column(c) for c in ("key_id", "customer_id", "kek_id", "wrapped", "created_at")),
        )
        bind.execute(
            wrapped.insert(),
            [
                {
                    "key_id": row.key_id,
                    "customer_id": row.customer_id,
                    "kek_id": kek.id,
                    "wrapped": kek.wrap(
                        CustomerKey(row.key_id, row.customer_id, bytes(row.secret), row.salt)
                    ),
                    "created_at": row.created_at,
                }
                for row in rows
            ],
        )
        context.config.attributes["moved_plaintext_keys"] = True
    # Deleted first: on SQLite the connection's secure_delete overwrites the rows.
    op.execute("DELETE FROM customer_keys")
    op.drop_table("customer_keys")


def downgrade() -> None:
    raise NotImplementedError("the keys stay wrapped: restore a backup to go back")
