"""Complaints seeded in bulk: the store at scale (1 M events of 100 k complaints) for the export
and scale rows, and the bench's own complaints to add evidence to and to miss limits.

Through the API (about 200 acceptances/s here) or the projector (about 1,000 events/s) that
would take hours. Only the writing is bulk here; everything written is what the services
would have written:
- each complaint lives its life through the real aggregate's commands (accepted, assigned,
  investigated, answered, called back, archived: as far as its `Stage`), with its acceptance
  number and thread index aggregates;
- each event is sealed by the real `SealingMapper` under its customer's own key;
- the read models are the real projection's rows (`summary_row`, `deadline_rows`, …) and the
  audit chain the real hash (`record_hash` of `record_of`) in global order;
- events get their positions in time order, so a complaint's events lie apart as they do in a
  store that grew over months.

The rows go in with COPY, then the projections' positions are moved to the head: the projector
goes on from there as if it had applied every event. The store must be quiet while seeding (no
service writing; projections caught up).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast
from uuid import UUID, uuid4

import asyncpg
import psycopg
from sqlalchemy import JSON, Table

from shared.audit.chain import line_body, masked, record_of
from shared.audit.verify import GENESIS, committed_record, link_hash
from shared.domain.codes import (
    BusinessType,
    Category,
    Channel,
    Complexity,
    EvidenceKind,
    Satisfaction,
)
from shared.domain.complaint import Complaint
from shared.domain.context import Actor, CommandContext
from shared.domain.indexes import AcceptanceNumber, ComplaintThread
from shared.domain.policy import Policy
from shared.readmodel.summaries import analysis_row, deadline_rows, notification_rows, summary_row
from shared.readmodel.tables import (
    complaint_analysis,
    complaint_summaries,
    deadlines,
    notifications,
)
from shared.readmodel.times import to_utc
from shared.settings import Settings
from shared.store.application import (
    ComplaintsApplication,
    new_acceptance_no,
    stored_event,
    thread_id_of,
)
from shared.store.keystore import CustomerKey, KekFile, KeyStore
from shared.store.sealing import KeyRing, SealingMapper
from shared.store.tables import customer_complaints

CHUNK = 1_000  # complaints per step; a step's events take the next positions, in time order
WORKERS = 2

CHANNELS = [c for c in Channel if c is not Channel.REGULATOR]
BUSINESS_TYPES = list(BusinessType)
CATEGORIES = list(Category)
EVIDENCE_KINDS = list(EvidenceKind)


class Stage(StrEnum):
    """How far a seeded complaint has got."""

    ACCEPTED = "accepted"  # and left alone
    ASSIGNED = "assigned"  # to an investigator
    INVESTIGATING = "investigating"  # assigned, six pieces of evidence
    ARCHIVED = "archived"  # findings, resolution, reply (sent), callback, archive


#: Events of a complaint at each stage: its own, plus its acceptance number's and its thread's.
EVENTS = {Stage.ACCEPTED: 3, Stage.ASSIGNED: 4, Stage.INVESTIGATING: 10, Stage.ARCHIVED: 10}


@dataclass(frozen=True)
class Seed:
    """`complaints` complaints at `stage`, of customers `prefix`-000000…, accepted evenly over
    `span` from `first_at`. `varied`: channels, business types and categories take turns;
    otherwise every complaint is a hotline billing complaint about a mobile line."""

    prefix: str
    complaints: int
    customers: int
    first_at: datetime
    span: timedelta
    stage: Stage
    varied: bool = True
    head: int = 0  # the store's last position before seeding

    def at(self, n: int) -> datetime:
        return self.first_at + self.span * n / self.complaints

    def customer(self, n: int) -> str:
        return f"{self.prefix}-{n % self.customers:06d}"

    def position_before(self, n: int) -> int:
        """The last position before complaint n's step (each step's events are contiguous)."""
        return self.head + n * EVENTS[self.stage]


class SeedKeys(KeyRing):
    """The customers' keys, made up front and written with COPY instead of one transaction
    per acceptance; to the mapper they are the key ring."""

    def __init__(self, keys: dict[str, CustomerKey]) -> None:
        super().__init__(cast("KeyStore", None))  # every method that would use it is overridden
        self.by_customer = keys
        self.by_complaint: dict[UUID, CustomerKey] = {}

    def bind(self, complaint_id: UUID, customer_id: str) -> CustomerKey | None:
        key = self.by_complaint[complaint_id] = self.by_customer[customer_id]
        return key

    def complaint_key(self, complaint_id: UUID) -> CustomerKey | None:
        return self.by_complaint.get(complaint_id)

    def salt_opened(self, complaint_id: UUID) -> str | None:
        key = self.by_complaint.get(complaint_id)
        return key.salt if key else None


@dataclass
class Rows:
    """What one step writes, per table; the chain as what each link commits to and its masked
    export line (the hashes are chained in order by the parent)."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    chain: list[tuple[int, datetime, bytes, str]] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    deadlines: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    analysis: list[dict[str, Any]] = field(default_factory=list)
    bindings: list[dict[str, Any]] = field(default_factory=list)
    ids: list[UUID] = field(default_factory=list)


class Lives:
    """Lives complaints through the real aggregate and turns their events into rows (one per
    worker process)."""

    def __init__(
        self, settings: Settings, plans: list[Seed], keys: dict[str, CustomerKey], dsn: str
    ) -> None:
        self.plans = plans
        self.policy = Policy.load(settings.policy_path)
        self.keys = SeedKeys(keys)
        app = ComplaintsApplication(
            settings, self.policy, KekFile.load(settings.kek_path, create=False)
        )
        try:
            self.mapper = SealingMapper(app.mapper.transcoder, keys=self.keys)
            self.secret = app.index_secret
        finally:
            app.close()
        self.db = psycopg.connect(dsn, autocommit=True)

    def step(self, which: int, start: int, numbers: list[str]) -> Rows:
        """Live complaints start, start + 1, … of plan `which` (one chunk), with these
        acceptance numbers."""
        plan = self.plans[which]
        events: list[Any] = []
        lives: dict[UUID, list[Any]] = {}
        for n, number in enumerate(numbers, start):
            complaint, more = self._live(plan, n, number)
            own = complaint.collect_events()
            lives[complaint.id] = [complaint, len(own)]
            events += [*own, *more]
        events.sort(key=lambda e: e.timestamp)  # stable: a save's own order is kept
        rows = Rows(ids=list(lives))
        position = plan.position_before(start)
        for event in events:
            position += 1
            stored = self.mapper.to_stored_event(event)
            rows.events.append(
                (
                    position,
                    stored.originator_id,
                    stored.originator_version,
                    stored.topic,
                    stored.state,
                )
            )
            line = record_of(stored_event(event, position=position, salt_of=self.keys.salt_opened))
            rows.chain.append(
                (
                    position,
                    to_utc(event.timestamp),
                    committed_record(line),
                    line_body(masked(line)),
                )
            )
            life = lives.get(event.originator_id)
            if life is not None:
                life[1] -= 1
                if life[1] == 0:  # its last event: the read models as the projector leaves them
                    complaint = life[0]
                    rows.summaries.append(summary_row(complaint, position, self.secret))
                    rows.deadlines += deadline_rows(complaint)
                    rows.notifications += notification_rows(complaint)
                    rows.analysis.append(analysis_row(complaint))
        # Each step fills its positions exactly: a domain change that adds or drops an event
        # must change EVENTS, or steps would overlap or leave holes.
        assert position == plan.position_before(start + len(numbers)), "see EVENTS"
        rows.bindings = [
            {
                "complaint_id": str(c),
                "customer_id": k.customer_id,
                "key_id": k.key_id,
                "bound_at": lives[c][0].accepted_at.timestamp(),
            }
            for c, k in self.keys.by_complaint.items()
        ]
        self.keys.by_complaint.clear()
        return rows

    def write(self, rows: Rows) -> None:
        """Everything of a step but the chain, in one transaction (COPY)."""
        with self.db.transaction(), self.db.cursor() as cursor:
            _copy(cursor, customer_complaints, rows.bindings)
            with cursor.copy(
                "COPY complaints_events (notification_id, originator_id, originator_version, "
                "topic, state) FROM STDIN"
            ) as copy:
                for record in rows.events:
                    copy.write_row(record)
            _copy(cursor, complaint_summaries, rows.summaries)
            _copy(cursor, deadlines, rows.deadlines)
            _copy(cursor, notifications, rows.notifications)
            _copy(cursor, complaint_analysis, rows.analysis)

    def _live(self, plan: Seed, n: int, number: str) -> tuple[Complaint, list[Any]]:
        at = plan.at(n)
        customer = plan.customer(n)
        person = n % plan.customers
        kind = n if plan.varied else 0
        intake: dict[str, Any] = {
            "channel": str(CHANNELS[kind % len(CHANNELS)]),
            "customer": {
                "id": customer,
                "name": f"Customer {person}",
                "phone": f"139{person:08d}",
                "email": None,
                "vip_tier": None,
            },
            "service_number": f"138{n:08d}",
            "business_type": str(BUSINESS_TYPES[kind % len(BUSINESS_TYPES)]),
            "category": str(CATEGORIES[(kind + 1) % len(CATEGORIES)]),
            "area": None,
            "occurred_at": (at - timedelta(days=1)).isoformat(),
            "received_at": None,
            "description": f"Complaint {n}: billed twice for the month, and no one called back.",
            "demand": "Refund the second charge and explain what happened.",
            "reply_channel": "sms",
            "evidence": [],
        }
        policy = self.policy
        complaint = Complaint.accept(
            complaint_id=uuid4(),
            acceptance_no=number,
            intake=intake,
            repeat_of=None,
            policy=policy,
            ctx=ctx("agent", "intake", at),
        )
        salt = self.keys.by_customer[customer].salt
        indexes = [
            AcceptanceNumber.reserve(number, complaint.id, at),
            ComplaintThread.start(thread_id_of(intake, salt, self.secret), complaint.id, at),
        ]
        stage = plan.stage
        if stage is not Stage.ACCEPTED:
            complaint.assign(
                "network",
                INVESTIGATOR,
                Complexity.SIMPLE,
                policy,
                ctx("supervisor", "investigation", at, minutes=10),
            )
        if stage is Stage.INVESTIGATING:
            for k in range(6):
                complaint.add_evidence(
                    str(EVIDENCE_KINDS[k % len(EVIDENCE_KINDS)]),
                    f"REF-{n}-{k}",
                    f"Checked record {k} of complaint {n}: two charges on the same day.",
                    ctx("investigator", "investigation", at, minutes=60 * (k + 1)),
                )
        if stage is Stage.ARCHIVED:
            _settle(complaint, n, at, policy)
        return complaint, [e for index in indexes for e in index.collect_events()]


def _settle(complaint: Complaint, n: int, at: datetime, policy: Policy) -> None:
    """Findings, resolution, reply (and its message sent), callback, archive: over four days."""
    day = 60 * 24
    complaint.record_findings(
        "Charged twice by a billing batch that ran again.",
        "Tariff rule 7",
        "billing batch rerun",
        True,
        ctx("investigator", "investigation", at, minutes=day),
    )
    complaint.propose_resolution(
        ["stop the rerun"],
        [{"type": "refund", "amount": "38.00"}],
        "billing-1",
        at + timedelta(days=2),
        ctx("investigator", "investigation", at, minutes=day + 60),
    )
    complaint.reply(
        "sms",
        "Upheld: charged twice.",
        "Tariff rule 7",
        "Refund within two days.",
        "Refund made.",
        policy,
        ctx("investigator", "investigation", at, minutes=day + 120),
    )
    complaint.record_notification(
        next(iter(complaint.notifications)),
        sent=True,
        detail=f"gw-{n}",
        ctx=ctx("system", "investigation", at, minutes=day + 121),
    )
    complaint.record_callback(
        Satisfaction.SATISFIED,
        True,
        "Customer confirmed the refund.",
        policy,
        ctx("callback", "callback", at, minutes=3 * day),
    )
    complaint.archive(
        f"Complaint {n}: duplicate charge refunded.",
        ctx("supervisor", "callback", at, minutes=4 * day),
    )


_worker: tuple[Any, ...] = ()
_lives: Lives | None = None


def _start_worker(*args: Any) -> None:
    """Only keeps what the worker needs: `Lives` is made by the first step, so a failure
    there reaches the parent instead of the pool restarting workers for ever."""
    global _worker
    _worker = args


def _step(
    args: tuple[int, int, list[str]],
) -> tuple[list[tuple[int, datetime, bytes, str]], list[UUID]]:
    """A step in a worker: its rows written; what the chain commits to (and each event's
    masked export line), and its ids returned."""
    global _lives
    if _lives is None:
        settings, plans, keys, dsn = _worker
        _lives = Lives(settings, plans, {k[1]: CustomerKey(*k) for k in keys}, dsn)
    rows = _lives.step(*args)
    _lives.write(rows)
    return rows.chain, rows.ids


#: The investigator every seeded complaint is assigned to (and who acts on it).
INVESTIGATOR = "bench-investigator"


def ctx(role: str, service: str, at: datetime, *, minutes: int = 0) -> CommandContext:
    """Who does what, through which service, `minutes` after `at`."""
    return CommandContext(
        actor=Actor(id=f"bench-{role}", role=role),
        service=service,
        at=at + timedelta(minutes=minutes),
        channel="hotline",
        correlation_id=None,
    )


# ---------------------------------------------------------------------- writing
def _copy(cursor: psycopg.Cursor[Any], table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = [c.name for c in table.columns]
    json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
    with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(
                [json.dumps(row[c]) if c in json_columns else row.get(c) for c in columns]
            )


def _numbers(plan: Seed, policy: Policy, taken: set[str]) -> list[str]:
    """One acceptance number per complaint, none of them `taken` (they are drawn at random)."""
    numbers: list[str] = []
    for n in range(plan.complaints):
        day = plan.at(n).astimezone(policy.tz)
        number = new_acceptance_no(day)
        while number in taken:
            number = new_acceptance_no(day)
        taken.add(number)
        numbers.append(number)
    return numbers


async def seed_bulk(dsn: str, settings: Settings, seeds: list[Seed]) -> list[dict[str, Any]]:
    """Seed each of `seeds` in turn into the quiet store at `dsn`, after what it holds (their
    `head` is ignored); for each, the ids of its complaints in order and how long it took."""
    began = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        head = int(
            await conn.fetchval("SELECT coalesce(max(notification_id), 0) FROM complaints_events")
        )
        chained = await conn.fetchrow(
            "SELECT position, hash FROM audit_chain ORDER BY position DESC LIMIT 1"
        )
        tracked = await conn.fetch("SELECT position FROM projection_tracking")
        if (chained["position"] if chained else 0) != head or any(
            row["position"] != head for row in tracked
        ):
            raise RuntimeError("seed a quiet store: the projections are behind the events")
        prev = chained["hash"] if chained else GENESIS
        taken = {r[0] for r in await conn.fetch("SELECT acceptance_no FROM complaint_summaries")}
        policy = Policy.load(settings.policy_path)
        plans: list[Seed] = []
        steps: list[tuple[int, int, list[str]]] = []
        keys: dict[str, CustomerKey] = {}
        created: dict[str, float] = {}
        for which, seed in enumerate(seeds):
            plan = replace(seed, head=head)
            head = plan.position_before(plan.complaints)
            plans.append(plan)
            numbers = _numbers(plan, policy, taken)
            steps += [(which, s, numbers[s : s + CHUNK]) for s in range(0, plan.complaints, CHUNK)]
            for n in range(plan.customers):  # made at the customer's first acceptance
                keys[plan.customer(n)] = CustomerKey.new(plan.customer(n))
                created[plan.customer(n)] = plan.at(n).timestamp()
        kek = KekFile.load(settings.kek_path, create=False).current
        await conn.copy_records_to_table(
            "wrapped_keys",
            records=[
                (k.key_id, k.customer_id, kek.id, kek.wrap(k), created[c]) for c, k in keys.items()
            ],
            columns=["key_id", "customer_id", "kek_id", "wrapped", "created_at"],
        )
        ids: list[list[UUID]] = [[] for _ in plans]
        shared = [(k.key_id, k.customer_id, k.secret, k.salt) for k in keys.values()]
        context = multiprocessing.get_context("spawn")
        with context.Pool(WORKERS, _start_worker, (settings, plans, shared, dsn)) as pool:
            # The workers write each step but its chain, which is linked here, in order.
            for (which, _, _), (links, step_ids) in zip(
                steps, pool.imap(_step, steps), strict=True
            ):
                chain = []
                for position, at, committed, masked_line in links:
                    current = link_hash(prev, committed)
                    chain.append((position, at, current, prev, masked_line))
                    prev = current
                await conn.copy_records_to_table(
                    "audit_chain",
                    records=chain,
                    columns=["position", "at", "hash", "prev_hash", "masked_line"],
                )
                ids[which] += step_ids
        await conn.execute("SELECT setval('complaints_events_notification_id_seq', $1)", head)
        await conn.execute(
            "INSERT INTO projection_tracking (name, position) VALUES "
            "('complaint_summaries', $1), ('audit_chain', $1) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            head,
        )
        seeded = time.monotonic() - began
        await conn.execute("ANALYZE")
        return [
            {
                "complaints": plan.complaints,
                "events": plan.position_before(plan.complaints) - plan.head,
                "customers": plan.customers,
                "ids": plan_ids,
                "seed_seconds": seeded,
            }
            for plan, plan_ids in zip(plans, ids, strict=True)
        ]
    finally:
        await conn.close()
