"""The per-complaint read model: summaries (lists and filters), deadlines (the deadline watch)
and the index of messages still to send (the notification dispatcher); and one row per major
incident (its list and the incident watch).

Each row is a function of the complaint's (or incident's) state at the last event applied,
computed by the aggregate itself, so the projection never re-implements the rules. The
projection keeps the complaints it touched last in memory (a bounded LRU): a batch folds its
events onto the complaint held at the version just before them, with the aggregate's own
`mutate`, and loads from the store only a complaint it does not hold at that version. A
complaint whose personal data is erased is never held: it is loaded as the store gives it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.domain import OriginatorIDError, OriginatorVersionError
from sqlalchemy import and_, delete, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.domain.codes import IncidentAction
from shared.domain.complaint import Complaint
from shared.domain.indexes import MajorIncident
from shared.domain.personal import phone_digest
from shared.readmodel.cursor import decode_cursor, encode_cursor
from shared.readmodel.tables import (
    complaint_analysis,
    complaint_summaries,
    deadlines,
    major_incidents,
    notifications,
)
from shared.readmodel.times import from_db, to_utc
from shared.readmodel.upsert import upsert
from shared.store.application import StoredEvent
from shared.store.facade import ComplaintStore


@dataclass(frozen=True)
class Rows:
    summaries: list[dict[str, Any]]
    deadlines: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    analysis: list[dict[str, Any]]
    incidents: list[dict[str, Any]]


class SummaryProjection:
    name = "complaint_summaries"
    folds = True

    def __init__(self, store: ComplaintStore, cache_size: int | None = None) -> None:
        self.store = store
        #: How many complaints it holds (`Settings.projection_cache_size`); 0 folds nothing
        #: and loads every complaint a batch touches from the store.
        self.cache_size = store.settings.projection_cache_size if cache_size is None else cache_size
        #: Complaints as of their `version`, least recently touched first.
        self._held: OrderedDict[UUID, Complaint] = OrderedDict()
        #: Keys the phone digests (`Settings.index_key`).
        self.index_secret = store.settings.index_key.get_secret_value().encode()

    async def prepare(self, events: Sequence[StoredEvent]) -> Rows:
        touched: dict[UUID, list[StoredEvent]] = {}
        incidents: dict[UUID, int] = {}
        for event in events:
            if event.aggregate == "Complaint":
                touched.setdefault(event.aggregate_id, []).append(event)
            elif event.aggregate == MajorIncident.__name__:
                incidents[event.aggregate_id] = event.version
        complaints: dict[UUID, Complaint | None] = {
            complaint_id: self._folded(complaint_id, own) for complaint_id, own in touched.items()
        }
        missing = {i: own[-1].version for i, own in touched.items() if complaints[i] is None}
        if missing:
            for loaded in await self.store.load_versions(missing):
                complaints[loaded.id] = loaded
        summaries, due, messages, analysis = [], [], [], []
        for complaint_id, complaint in complaints.items():
            assert complaint is not None
            self._hold(complaint)
            position = touched[complaint_id][-1].position
            assert position is not None
            summaries.append(summary_row(complaint, position, self.index_secret))
            due.extend(deadline_rows(complaint))
            messages.extend(notification_rows(complaint))
            analysis.append(analysis_row(complaint))
        declared = await self.store.load_incidents(incidents) if incidents else []
        return Rows(summaries, due, messages, analysis, [incident_row(i) for i in declared])

    def _folded(self, complaint_id: UUID, events: list[StoredEvent]) -> Complaint | None:
        """The complaint after `events` (its next ones, in order), folded onto the one held
        at the version just before them (or begun by them); None if it must be loaded."""
        held = self._held.pop(complaint_id, None)
        if self.cache_size <= 0 or any(
            e.sealed is None or e.type == "PersonalDataErased" for e in events
        ):
            return None  # the store's reading of an erased complaint, as ever
        first = events[0].version
        complaint: Any
        if first == 1:
            complaint = None
        elif held is not None and held.version == first - 1:
            complaint = held
        else:
            return None
        try:
            for event in events:
                complaint = event.sealed.mutate(complaint)
        except (OriginatorIDError, OriginatorVersionError):
            return None  # not its next events after all: loaded
        return complaint if isinstance(complaint, Complaint) else None

    def _hold(self, complaint: Complaint) -> None:
        held = self._held
        if self.cache_size <= 0 or complaint.personal_data_erased_at is not None:
            held.pop(complaint.id, None)
            return
        held[complaint.id] = complaint
        held.move_to_end(complaint.id)
        while len(held) > self.cache_size:
            held.popitem(last=False)

    async def write(self, conn: AsyncConnection, prepared: Rows) -> None:
        await upsert(conn, complaint_summaries, prepared.summaries, ["complaint_id"])
        ids = [row["complaint_id"] for row in prepared.summaries]
        if ids:
            await conn.execute(delete(deadlines).where(deadlines.c.complaint_id.in_(ids)))
        if prepared.deadlines:
            await conn.execute(deadlines.insert(), prepared.deadlines)
        await upsert(
            conn, notifications, prepared.notifications, ["complaint_id", "notification_id"]
        )
        await upsert(conn, complaint_analysis, prepared.analysis, ["complaint_id"])
        await upsert(conn, major_incidents, prepared.incidents, ["incident_id"])

    async def reset(self, conn: AsyncConnection) -> None:
        await conn.execute(delete(major_incidents))
        await conn.execute(delete(notifications))
        await conn.execute(delete(complaint_analysis))
        await conn.execute(delete(deadlines))
        await conn.execute(delete(complaint_summaries))


def summary_row(complaint: Complaint, position: int, index_secret: bytes) -> dict[str, Any]:
    """What lists show and filter on. The phone and service number enter by their keyed
    digests, and only while they are not erased: an erased customer is not found by number."""
    intake = complaint.intake
    assignment = complaint.assignment or {}
    return {
        "complaint_id": str(complaint.id),
        "acceptance_no": complaint.acceptance_no,
        "acceptance_key": acceptance_key(complaint.acceptance_no),
        "status": str(complaint.status),
        "level": str(complaint.level),
        "owner": complaint.owner,
        "channel": intake["channel"],
        "business_type": intake["business_type"],
        "category": intake["category"],
        "vip_tier": intake["customer"].get("vip_tier"),
        "area": intake.get("area"),
        "customer_id": intake["customer"]["id"],
        "department": assignment.get("department"),
        "investigator": assignment.get("investigator"),
        "phone_digest": phone_digest(intake["customer"].get("phone"), index_secret),
        "service_digest": phone_digest(intake.get("service_number"), index_secret),
        "next_due_at": next_due(complaint),
        "repeat_of": complaint.repeat_of,
        "time_barred": complaint.time_barred,
        "accepted_at": to_utc(complaint.accepted_at),
        "updated_at": to_utc(complaint.modified_on),
        "version": complaint.version,
        "position": position,
        "tasks": sum(
            1
            for n in complaint.notifications.values()
            if n.get("task") and n["status"] == "pending"
        ),
        "incident_id": complaint.incident_id,
    }


def acceptance_key(number: str) -> str:
    """An acceptance number as lists find it: without its dashes."""
    return number.replace("-", "")


def next_due(complaint: Complaint) -> datetime | None:
    """The earliest due time of the complaint's limits still counting: not met, not closed,
    and not standing still while its clock is paused (`still_counting`, per limit)."""
    paused = complaint.paused_at is not None
    due = [
        _parsed(d["due_at"])
        for d in complaint.deadlines.values()
        if not d.get("met_at") and not d.get("closed_at") and not (paused and d["pausable"])
    ]
    return min(due, default=None)


def incident_row(incident: MajorIncident) -> dict[str, Any]:
    return {
        "incident_id": str(incident.id),
        "category": incident.category,
        "area": incident.area,
        "number": incident.number,
        "declared_at": to_utc(incident.declared_at),
        "first_member_at": to_utc(incident.first_member_at),
        "last_member_at": to_utc(incident.last_member_at),
        "closes_at": to_utc(incident.closes_at),
        "members": len(incident.members),
        "escalated": sum(1 for m in incident.members if m["done"] == IncidentAction.ESCALATED),
    }


def analysis_row(complaint: Complaint) -> dict[str, Any]:
    intake = complaint.intake
    assignment = complaint.assignment or {}
    findings = complaint.findings or {}
    last_callback = complaint.callbacks[-1] if complaint.callbacks else {}
    return {
        "complaint_id": str(complaint.id),
        "accepted_at": to_utc(complaint.accepted_at),
        "channel": intake["channel"],
        "business_type": intake["business_type"],
        "category": intake["category"],
        "vip_tier": intake["customer"].get("vip_tier"),
        "area": intake.get("area"),
        "department": assignment.get("department"),
        "investigator": assignment.get("investigator"),
        "complexity": assignment.get("complexity"),
        "root_cause": findings.get("root_cause"),
        "upheld": findings.get("upheld"),
        "status": str(complaint.status),
        "refusal_reason": complaint.refused_for,
        "level": str(complaint.level),
        "repeat": complaint.repeat_of is not None,
        "escalations": len(complaint.escalations),
        "satisfaction": last_callback.get("satisfaction"),
        "resolved": last_callback.get("resolved"),
        "unreached_callbacks": len(complaint.callback_attempts),
        "paused": complaint.paused_at is not None,
        "deadlines": list(complaint.deadlines.values()),
        "timeline": list(complaint.timeline),
    }


def _time(value: str | None) -> datetime | None:
    return _parsed(value) if value else None


@lru_cache(maxsize=65_536)
def _parsed(value: str) -> datetime:
    """A stored time in UTC (a complaint's limits are written again each time it changes,
    their times mostly the same: parsed once)."""
    return to_utc(datetime.fromisoformat(value))


def deadline_rows(complaint: Complaint) -> list[dict[str, Any]]:
    paused = complaint.paused_at is not None
    complaint_id = str(complaint.id)
    return [
        {
            "complaint_id": complaint_id,
            "key": key,
            "name": d["name"],
            "due_at": _time(d["due_at"]),
            "met_at": _time(d.get("met_at")),
            "closed_at": _time(d.get("closed_at")),
            "escalated_at": _time(d.get("escalated_at")),
            "paused": paused and bool(d["pausable"]),
            "target": d["target"],
            "policy_version": d.get("policy_version"),
            "calendar": d.get("calendar") or "official",
        }
        for key, d in complaint.deadlines.items()
    ]


def notification_rows(complaint: Complaint) -> list[dict[str, Any]]:
    return [
        {
            "complaint_id": str(complaint.id),
            "notification_id": n["id"],
            "channel": n["channel"],
            "task": bool(n.get("task")),
            "status": n["status"],
            "attempts": n["attempts"],
            "requested_at": to_utc(datetime.fromisoformat(n["requested_at"])),
            "last_failed_at": to_utc(datetime.fromisoformat(n["last_failed_at"]))
            if n["last_failed_at"]
            else None,
        }
        for n in complaint.notifications.values()
    ]


# ------------------------------------------------------------------------------ queries
def still_counting() -> tuple[Any, ...]:
    """Where a deadline row is neither met nor closed, and its clock runs."""
    d = deadlines.c
    return d.met_at.is_(None), d.closed_at.is_(None), d.paused.is_(False)


def _utc_row(row: Any) -> dict[str, Any]:
    return {k: from_db(v) if isinstance(v, datetime) else v for k, v in dict(row).items()}


@dataclass(frozen=True)
class ListFilter:
    #: Any of these statuses (none: every status).
    status: tuple[str, ...] = ()
    category: str | None = None
    business_type: str | None = None
    owner: str | None = None
    customer_id: str | None = None
    #: With or without its dashes.
    acceptance_no: str | None = None
    department: str | None = None
    investigator: str | None = None
    level: str | None = None
    vip_tier: str | None = None
    #: The contact phone or the service number, as given (found by its keyed digest).
    phone: str | None = None
    #: A limit still running now is due before this time.
    due_before: datetime | None = None
    overdue: bool | None = None
    task: bool | None = None
    sort: str = "newest"


def _open_limits(*where: Any) -> Any:
    """The ids of complaints with a limit still counting that meets `where`, gathered first
    (an index range on the open limits). Asked per row instead, the planner walks the newest
    summaries probing each one: it takes "open" and "passed" as independent and expects a
    third of all limits to be both, where in a store of a year it is a few dozen."""
    found = (
        select(deadlines.c.complaint_id)
        .where(*still_counting(), *where)
        .distinct()
        .cte()
        .prefix_with("MATERIALIZED")
    )
    return select(found.c.complaint_id)


async def list_summaries(
    engine: AsyncEngine,
    filters: ListFilter,
    *,
    now: datetime,
    limit: int,
    cursor: str | None,
    index_secret: bytes,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of summaries, newest first (or soonest due first, `sort="due"`), and the cursor
    of the next page (None at the end)."""
    s = complaint_summaries
    now = to_utc(now)
    query = select(s)
    if filters.status:
        query = query.where(s.c.status.in_(filters.status))
    for column in (
        "category",
        "business_type",
        "owner",
        "customer_id",
        "department",
        "investigator",
        "level",
        "vip_tier",
    ):
        value = getattr(filters, column)
        if value is not None:
            query = query.where(s.c[column] == value)
    if filters.acceptance_no is not None:
        query = query.where(s.c.acceptance_key == acceptance_key(filters.acceptance_no))
    if filters.phone is not None:
        digest = phone_digest(filters.phone, index_secret)
        query = query.where(or_(s.c.phone_digest == digest, s.c.service_digest == digest))
    if filters.overdue is not None:
        late = _open_limits(deadlines.c.due_at < now)
        query = query.where(
            s.c.complaint_id.in_(late) if filters.overdue else s.c.complaint_id.not_in(late)
        )
    if filters.due_before is not None:
        # Running: not yet passed (a passed one is overdue, not due).
        due = _open_limits(deadlines.c.due_at >= now, deadlines.c.due_at < filters.due_before)
        query = query.where(s.c.complaint_id.in_(due))
    if filters.task is not None:
        query = query.where(s.c.tasks > 0 if filters.task else s.c.tasks == 0)
    parts = _by_due(query, cursor) if filters.sort == "due" else [_newest_first(query, cursor)]
    async with engine.connect() as conn:
        rows: list[dict[str, Any]] = []
        for part in parts:
            wanted = limit + 1 - len(rows)
            if wanted > 0:
                found = await conn.execute(part.limit(wanted))
                rows.extend(_utc_row(r) for r in found.mappings())
        page = rows[:limit]
        ids = [r["complaint_id"] for r in page]
        due_rows = (
            (await conn.execute(select(deadlines).where(deadlines.c.complaint_id.in_(ids))))
            .mappings()
            .all()
            if ids
            else []
        )
    by_complaint: dict[str, list[dict[str, Any]]] = {}
    for d in due_rows:
        by_complaint.setdefault(d["complaint_id"], []).append(_utc_row(d))
    for row in page:
        row["deadlines"] = by_complaint.get(row["complaint_id"], [])
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        # Its keys in both orders: a cursor is a place in either (`shared.readmodel.cursor`).
        next_cursor = encode_cursor(last["accepted_at"], last["complaint_id"], last["next_due_at"])
    return page, next_cursor


def _newest_first(query: Any, cursor: str | None) -> Any:
    s = complaint_summaries.c
    if cursor:
        place = decode_cursor(cursor)
        at, complaint_id = place.at, place.row_id
        query = query.where(
            or_(s.accepted_at < at, and_(s.accepted_at == at, s.complaint_id < complaint_id))
        )
    return query.order_by(s.accepted_at.desc(), s.complaint_id.desc())


def _by_due(query: Any, cursor: str | None) -> list[Any]:
    """By the next due time, soonest first, then by id; then the complaints with no limit
    counting, by id. Two queries, read in turn until the page is full: each walks its part of
    the index (`ix_summaries_next_due`) from the cursor on, where one query ordering nulls
    last would scan past every row before the cursor."""
    s = complaint_summaries.c
    place = decode_cursor(cursor) if cursor else None
    due, complaint_id = (place.due, place.row_id) if place else (None, None)
    counting = query.where(s.next_due_at.is_not(None))
    none = query.where(s.next_due_at.is_(None))
    if complaint_id is not None and due is not None:
        counting = counting.where(tuple_(s.next_due_at, s.complaint_id) > tuple_(due, complaint_id))
    elif complaint_id is not None:  # past the counting ones already
        counting = None
        none = none.where(s.complaint_id > complaint_id)
    parts = [none.order_by(s.complaint_id.asc())]
    if counting is not None:
        parts.insert(0, counting.order_by(s.next_due_at.asc(), s.complaint_id.asc()))
    return parts
