"""The event store's own SQL tables, beside the event and snapshot tables that the
`eventsourcing` library creates and owns (`complaints_events`, `complaints_snapshots`, ...):
customer keys and their bindings (shared.store.keystore), Idempotency-Key answers
(shared.store.idempotency), the leases that elect one process for a job (shared.store.lease) and
which KEKs each running process holds (shared.store.kek_holders).

Alembic migrates every table we declare, in one history (`shared/readmodel/migrations`, run
by the setup step); the read models' tables are in shared.readmodel.tables, the audit chain's
in shared.audit.tables."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

#: Each customer's key for their personal data in the events, wrapped by a key-encryption key
#: kept outside the database (see shared.store.keystore): at most one live key per customer;
#: erasure deletes it. Read and written by the store's threads.
wrapped_keys = Table(
    "wrapped_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("customer_id", String(64), nullable=False, unique=True),
    Column("kek_id", String(16), nullable=False),  # the KEK that wrapped it
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_wrapped_keys_kek", "kek_id"),
)

#: Which customer each complaint belongs to (how erasure finds a customer's complaints), and
#: the key it was accepted under: what it records stays sealed with that key.
customer_complaints = Table(
    "customer_complaints",
    metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("bound_at", Float, nullable=False),  # seconds since the epoch
    Index("ix_customer_complaints_customer", "customer_id"),
)

#: Idempotency-Key claims and the answers they got (see shared.store.idempotency).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("client", String(200), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(10), nullable=False),  # running | done
    Column("claimed_at", Float, nullable=False),  # seconds since the epoch
    Column("status_code", Integer),
    Column("headers", JSON),
    Column("body", LargeBinary),
    #: The complaint the answer is about; its body is then not kept (it would hold personal
    #: data) but shown again from the store by the recipe (shared.http.commands.answer_recipe).
    Column("complaint_id", String(36)),
    Column("recipe", JSON),
    Index("ix_idempotency_state_claimed", "state", "claimed_at"),  # forgetting old answers
    Index("ix_idempotency_complaint", "complaint_id"),
)

#: Who runs a job that one process at a time does (the projections, the notification
#: dispatcher): one holder per name, for as long as it keeps renewing (shared.store.lease).
projection_leases = Table(
    "projection_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("fencing", BigInteger, nullable=False),
)

#: The KEKs each running service process holds, as it last reported them (every
#: `kek_holders.REPORT_SECONDS`): a staged KEK is put in force only once every live process
#: holds it (shared.store.kek_holders).
kek_holders = Table(
    "kek_holders",
    metadata,
    Column("holder", String(128), primary_key=True),  # host:pid:object, as a lease's holder
    Column("kek_ids", JSON, nullable=False),  # every KEK in its file, staged or not
    Column("in_force", String(16), nullable=False),  # the KEK its new keys are wrapped by
    Column("seen_at", Float, nullable=False),  # seconds since the epoch, the database's clock
)
