"""Stored Idempotency-Key answers about a complaint keep no personal data: instead of the
answer's body, a recipe to show it again from the store (`idempotency_keys.recipe`: the
version and position shown, and when and to whom).

Answers stored before are converted: the version and position are read from the body, the
time is that of the claim, and no role is known (shown again, it is masked unless the caller's
token has a role that sees personal data). An answer that cannot be read is deleted: its retry
finds what its request wrote all the same.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("recipe", sa.JSON))
    keys = sa.table(
        "idempotency_keys",
        sa.column("client", sa.String),
        sa.column("key", sa.String),
        sa.column("claimed_at", sa.Float),
        sa.column("body", sa.LargeBinary),
        sa.column("complaint_id", sa.String),
        sa.column("recipe", sa.JSON),
    )
    bind = op.get_bind()
    answers = bind.execute(
        sa.select(keys.c.client, keys.c.key, keys.c.claimed_at, keys.c.body).where(
            keys.c.complaint_id.is_not(None), keys.c.body.is_not(None)
        )
    ).all()
    for client, key, claimed_at, body in answers:
        row = sa.and_(keys.c.client == client, keys.c.key == key)
        try:
            shown = json.loads(bytes(body))
            recipe = {
                "version": int(shown["version"]),
                "position": shown.get("position"),
                "at": datetime.fromtimestamp(claimed_at, UTC).isoformat(),
                "role": None,
            }
        except (ValueError, TypeError, KeyError):
            bind.execute(sa.delete(keys).where(row))
            continue
        bind.execute(sa.update(keys).where(row).values(body=None, recipe=recipe))


def downgrade() -> None:
    raise NotImplementedError("the answers' bodies are not kept any more; there is no way back")
