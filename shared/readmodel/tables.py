"""The read models' SQL tables: what the projections write from the events and the lists,
watches and reports read (never a replay). Alembic migrates them (`shared/readmodel/migrations`,
one history with the store's tables in shared.store.tables and the audit chain's in
shared.audit.tables)."""

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
    MetaData,
    String,
    Table,
)

metadata = MetaData()

#: How far each projection has read the event store. Written in the same transaction as the
#: projection's rows, so a projection applies every event exactly once.
projection_tracking = Table(
    "projection_tracking",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

#: One row per complaint: what lists and filters read (never a replay).
complaint_summaries = Table(
    "complaint_summaries",
    metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("acceptance_no", String(32), nullable=False, unique=True),
    Column("status", String(32), nullable=False),
    Column("level", String(32), nullable=False),
    Column("owner", String(200), nullable=False),  # a staff id: a token's sub, up to 200
    Column("channel", String(32), nullable=False),
    Column("business_type", String(32), nullable=False),
    Column("category", String(32), nullable=False),
    Column("vip_tier", String(16)),
    Column("area", String(32)),
    Column("customer_id", String(64), nullable=False),
    Column("department", String(128)),
    Column("repeat_of", String(36)),
    Column("time_barred", Boolean, nullable=False),
    Column("accepted_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("position", BigInteger, nullable=False),
    #: Messages to the customer that staff must carry out (a letter, a call, a visit).
    Column("tasks", Integer, nullable=False, server_default="0"),
    Column("incident_id", String(36)),  # the major incident it belongs to
    Column("investigator", String(200)),  # the one assigned
    #: The acceptance number without its dashes: found written either way.
    Column("acceptance_key", String(32), nullable=False, server_default=""),
    #: Keyed digests of the contact phone and the service number (`personal.phone_digest`),
    #: never the numbers; null once the customer's personal data is erased.
    Column("phone_digest", String(64)),
    Column("service_digest", String(64)),
    #: The earliest due time of its limits still counting (not met, not closed, not standing
    #: still); null when none is.
    Column("next_due_at", DateTime(timezone=True)),
    Index("ix_summaries_newest", "accepted_at", "complaint_id"),
    Index("ix_summaries_status", "status", "accepted_at"),
    Index("ix_summaries_customer", "customer_id", "accepted_at"),
    Index("ix_summaries_owner", "owner", "accepted_at"),
    Index("ix_summaries_department", "department", "accepted_at"),
    Index("ix_summaries_investigator", "investigator", "accepted_at"),
    Index("ix_summaries_level", "level", "accepted_at"),
    Index("ix_summaries_vip_tier", "vip_tier", "accepted_at"),
    Index("ix_summaries_acceptance_key", "acceptance_key"),
    Index("ix_summaries_phone", "phone_digest"),
    Index("ix_summaries_service_number", "service_digest"),
    Index("ix_summaries_next_due", "next_due_at", "complaint_id"),
)

#: One row per declared major incident: what `GET /incidents` lists and the incident watch
#: follows. `last_member_at` is the last member that counts (refused ones do not); the
#: incident is open until `closes_at`, one window after it.
major_incidents = Table(
    "major_incidents",
    metadata,
    Column("incident_id", String(36), primary_key=True),
    Column("category", String(32), nullable=False),
    Column("area", String(32), nullable=False),
    Column("number", Integer, nullable=False),  # the n-th of its category and area
    Column("declared_at", DateTime(timezone=True), nullable=False),
    Column("first_member_at", DateTime(timezone=True), nullable=False),
    Column("last_member_at", DateTime(timezone=True), nullable=False),
    Column("closes_at", DateTime(timezone=True), nullable=False),
    Column("members", Integer, nullable=False),
    Column("escalated", Integer, nullable=False),
    Index("ix_incidents_newest", "declared_at", "incident_id"),
    Index("ix_incidents_closing", "closes_at"),
)

#: One row per complaint: what the improvement reports count, with the complaint's deadlines as
#: recorded and the timeline that re-assesses them under another policy version.
complaint_analysis = Table(
    "complaint_analysis",
    metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("accepted_at", DateTime(timezone=True), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("business_type", String(32), nullable=False),
    Column("category", String(32), nullable=False),
    Column("vip_tier", String(16)),
    Column("area", String(32)),
    Column("department", String(128)),
    Column("investigator", String(200)),  # the one assigned (考核 per investigator)
    Column("complexity", String(16)),
    Column("root_cause", String(500)),
    Column("upheld", Boolean),
    Column("status", String(32), nullable=False),
    Column("refusal_reason", String(32)),  # refused complaints are reported on their own
    Column("level", String(32), nullable=False),
    Column("repeat", Boolean, nullable=False),
    Column("escalations", Integer, nullable=False),
    Column("satisfaction", String(32)),  # of the last callback that reached the customer
    Column("resolved", Boolean),
    Column("unreached_callbacks", Integer, nullable=False),
    Column("paused", Boolean, nullable=False),  # pausable limits stand still meanwhile
    Column("deadlines", JSON, nullable=False),
    Column("timeline", JSON, nullable=False),
    Index("ix_analysis_accepted", "accepted_at"),
)

#: Every limit ever opened on every complaint, indexed by due time for the deadline watch.
deadlines = Table(
    "deadlines",
    metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("key", String(80), primary_key=True),  # name, or name.2 when it opened again
    Column("name", String(64), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("met_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("escalated_at", DateTime(timezone=True)),
    #: A pausable limit whose complaint's clock is paused: not due while it stands still.
    Column("paused", Boolean, nullable=False),
    Column("target", Float, nullable=False),
    Column("policy_version", String(64)),
    #: official, or estimated: counted over a year whose holiday schedule was only estimated.
    Column("calendar", String(16), nullable=False, server_default="official"),
    Index("ix_deadlines_open_due", "met_at", "closed_at", "due_at"),
    Index("ix_deadlines_calendar", "calendar", "policy_version"),
)

#: Messages to customers not yet sent (the outbox's index; the complaint's events are the
#: outbox itself): what the notification dispatcher picks up.
notifications = Table(
    "notifications",
    metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("notification_id", String(64), primary_key=True),
    #: sms and email go through the gateway; letter, phone, in_person are staff tasks.
    Column("channel", String(16), nullable=False, server_default="sms"),
    Column("task", Boolean, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("last_failed_at", DateTime(timezone=True)),
    Index("ix_notifications_pending", "status", "requested_at"),
)
