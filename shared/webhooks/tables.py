"""The webhooks' SQL tables. Not read models: a subscription is configuration and a delivery's
attempts happened once, so `make rebuild` leaves them alone (the projection that enqueues
deliveries resumes from its position). Migrated with every other table
(`shared/readmodel/migrations`)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

#: Who is told of which events. The signing secret is kept sealed under the current KEK
#: (AES-GCM, bound to the subscription's id; the KEK file lives apart from the database and
#: its backups), so a copy of the database alone cannot forge deliveries. A deleted
#: subscription's row is kept (its deliveries' history stays in the database, no longer in
#: the API) but gets nothing more.
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("subscription_id", String(36), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("event_types", JSON, nullable=False),  # ["Complaint.Accepted", ...]
    Column("sees_personal_data", Boolean, nullable=False),
    Column("secret_kek", String(16), nullable=False),  # the KEK that sealed the secret
    Column("secret_sealed", LargeBinary, nullable=False),
    #: Events at or before this global position are not delivered: a subscription hears of
    #: what happens after it was made, not of the whole history.
    Column("after_position", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("deleted_at", DateTime(timezone=True)),
    Column("deleted_by", String(200)),
)

#: One delivery per (subscription, event): its `webhook-id` is made of both, so a receiver
#: can drop a resend. pending → delivered, or failed once its attempts ran out, or cancelled
#: when its subscription was deleted first.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("subscription_id", String(36), primary_key=True),
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("event_type", String(80), nullable=False),
    Column("event_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_status_code", Integer),
    Column("last_error", String(500)),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

#: Every attempt of every delivery, as it went.
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("subscription_id", String(36), primary_key=True),
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("attempt", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status_code", Integer),  # the receiver's answer; none if it never answered
    Column("error", String(500)),
    Column("duration_ms", Float, nullable=False),
)
