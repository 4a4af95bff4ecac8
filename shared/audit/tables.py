"""The audit chain's SQL tables: the chain over every event (a projection, rebuilt from the
events by `make rebuild`) and its signed heads (never rebuilt: a signature is made once, with
the key of its day). Migrated by Alembic with every other table (`shared/readmodel/migrations`)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

#: One SHA-256 chain over every event in global order (see shared.audit).
audit_chain = Table(
    "audit_chain",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    # The event's export line as a role that does not see personal data reads it, without its
    # hashes (`shared.audit.chain.line_body`): every personal field the digest the chain
    # committed to, no salt. It never changes, not even on erasure, so the masked export
    # streams it without reading the events. Null on rows chained before migration 0019
    # (the export computes theirs; `make rebuild` fills it).
    Column("masked_line", Text, nullable=True),
    Index("ix_audit_chain_at", "at"),
)

#: Signed chain heads. `successor`: on the checkpoint that announces a key rotation, the public
#: key (PEM) that signs from then on.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("signed_at", String(40), nullable=False),
    Column("signature", Text, nullable=False),
    Column("successor", Text, nullable=True),
    # The newest announcement is asked for by every audit route and signature.
    Index(
        "ix_audit_checkpoints_announced",
        "position",
        postgresql_where=text("successor IS NOT NULL"),
        sqlite_where=text("successor IS NOT NULL"),
    ),
)
