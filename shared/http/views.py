"""What a read returns: the complaint rebuilt from its events, and its history."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from shared.audit.verify import committed_data
from shared.domain import deadlines as book
from shared.domain import lifecycle
from shared.domain.chain import chain
from shared.domain.codes import Status
from shared.domain.complaint import Complaint
from shared.domain.personal import ERASED_TEXT, STATE_FIELDS, as_record, is_erased, opened
from shared.http import records
from shared.store.application import StoredEvent


def mask_phone(phone: str | None) -> str | None:
    """138****1234: the first three and last four digits stay."""
    if not phone or is_erased(phone):
        return phone
    if len(phone) <= 7:
        return "*" * len(phone)
    return f"{phone[:3]}{'*' * 4}{phone[-4:]}"


def mask_email(email: str | None) -> str | None:
    if not email or is_erased(email) or "@" not in email:
        return email
    local, domain = email.split("@", 1)
    return f"{local[:1]}***@{domain}"


def masked_intake(intake: dict[str, Any]) -> dict[str, Any]:
    """Intake facts as roles that need no contact details see them. The service number is
    masked too: for mobile complaints it is the customer's phone number."""
    customer = dict(intake["customer"])
    customer["phone"] = mask_phone(customer.get("phone"))
    customer["email"] = mask_email(customer.get("email"))
    return {
        **intake,
        "customer": customer,
        "service_number": mask_phone(intake.get("service_number")),
    }


class Deadline(BaseModel):
    key: str = Field(
        examples=["callback"], description="the name, or name.2, … when the limit opened again"
    )
    name: str = Field(examples=["reply"])
    due_at: datetime
    state: str = Field(
        examples=["running"],
        description="running; met (its event came in time); missed (the time ran out, or its "
        "event came late); closed (closed before it was due without its event: the complaint "
        "was refused or archived, or left the step it asked for)",
    )
    met_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: str | None = Field(default=None, examples=["Escalated"])
    escalated_at: datetime | None = Field(
        default=None, description="when its passing escalated the complaint (or alerted)"
    )
    opened_by: str = Field(
        default="accepted",
        examples=["replied"],
        description="what started it: accepted, escalated, reopened, replied, callback_done",
    )
    level: str | None = Field(default=None, description="the level when it opened")
    original_due_at: datetime | None = Field(
        default=None, description="the due time first set, when an extension moved it"
    )
    calendar: str = Field(
        default="official",
        examples=["estimated"],
        description="official, or estimated: counted in working days over a year whose "
        "holiday schedule the calendar data only estimates; counted again (recalculated_from) "
        "once a policy version brings the official schedule",
    )
    recalculated_from: datetime | None = Field(
        default=None, description="the due time before the official schedule replaced an estimate"
    )
    starts_at: datetime
    amount: int | float | None = Field(default=None, examples=[3])
    unit: str = Field(examples=["working_days"])
    target: float = Field(examples=[1.0], description="share to be met on time")
    pausable: bool = Field(default=False, description="stands still while the clock is paused")
    policy_version: str | None = Field(default=None, examples=["2026.2"])
    source: str = ""


class ComplaintView(BaseModel):
    """The complaint rebuilt from its events."""

    id: UUID
    acceptance_no: str = Field(examples=["261122-483920-7"])
    version: int = Field(examples=[1])
    status: Status
    level: str = Field(examples=["city"])
    owner: str = Field(examples=["agent-007"], description="the one current owner")
    owner_is_group: bool = Field(
        default=False,
        description="the owner is a level's supervisors: nobody there has been named yet",
    )
    handlers: list[records.Handler] = Field(
        default=[], description="the people named to handle it at an escalated level"
    )
    recalculations: list[records.Recalculation] = Field(
        default=[],
        description="limits counted again under another policy version: old and new due "
        "times and both versions",
    )
    first_contact_owner: str
    channel: str
    customer: records.CustomerShown
    service_number: str = Field(description="masked like the phone for roles that see masks")
    business_type: str
    category: str
    area: str | None = None
    occurred_at: datetime
    received_at: datetime | None = None
    accepted_at: datetime
    description: str
    demand: str
    reply_channel: str
    evidence: list[records.EvidenceRecord]
    repeat_of: UUID | None = None
    incident_id: UUID | None = Field(
        default=None, description="the major incident it belongs to (GET /incidents/{id})"
    )
    time_barred: bool = Field(description="past the limitation period of MIIT Art. 11")
    deadlines: list[Deadline]
    next_steps: str
    refusal: records.Refusal | None = None
    assignment: records.Assignment | None = None
    extensions: list[records.Extension] = []
    findings: records.Findings | None = None
    resolution: records.Resolution | None = None
    reply: records.Reply | None = None
    escalations: list[records.Escalation] = []
    reviews: list[records.Review] = []
    callbacks: list[records.Callback] = []
    callback_attempts: list[records.CallbackAttempt] = Field(
        default=[], description="callback attempts that did not reach the customer"
    )
    archive_summary: str | None = None
    alerts: list[records.Alert] = Field(
        default=[], description="missed limits at headquarters, reported to its supervisors"
    )
    notifications: list[records.Notification] = Field(
        default=[], description="messages to the customer and whether they were sent"
    )
    clock_paused: bool = False
    personal_data_erased_at: datetime | None = Field(
        default=None,
        description=f"when the customer's personal data was erased; it reads {ERASED_TEXT!r}",
    )
    as_of: datetime | None = Field(default=None, description="set on a point-in-time read")
    position: int | None = Field(
        default=None,
        description="on a command's answer: global position of the event it wrote",
    )

    @classmethod
    def of(
        cls,
        complaint: Complaint,
        *,
        now: datetime,
        unmasked: bool,
        as_of: datetime | None = None,
        position: int | None = None,
    ) -> ComplaintView:
        shown = _personal_data_opened(complaint)
        intake = shown["intake"] if unmasked else masked_intake(shown["intake"])
        customer = intake["customer"]
        return cls(
            id=complaint.id,
            acceptance_no=complaint.acceptance_no,
            version=complaint.version,
            status=complaint.status,
            level=str(complaint.level),
            owner=complaint.owner,
            owner_is_group=complaint.owner_is_group,
            handlers=list(complaint.handlers),
            recalculations=list(complaint.recalculations),
            first_contact_owner=complaint.first_contact_owner,
            channel=intake["channel"],
            customer=customer,
            service_number=intake["service_number"],
            business_type=intake["business_type"],
            category=intake["category"],
            area=intake.get("area"),
            occurred_at=intake["occurred_at"],
            received_at=intake.get("received_at"),
            accepted_at=complaint.accepted_at,
            description=intake["description"],
            demand=intake["demand"],
            reply_channel=intake["reply_channel"],
            evidence=shown["evidence"],
            repeat_of=complaint.repeat_of,
            incident_id=complaint.incident_id,
            time_barred=complaint.time_barred,
            deadlines=[
                Deadline.model_validate({**d, "key": d.get("key") or d["name"]})
                for d in complaint.deadline_states(now)
            ],
            next_steps=lifecycle.next_steps(complaint.status),
            refusal=complaint.refusal,
            assignment=complaint.assignment,
            extensions=complaint.extensions,
            findings=complaint.findings,
            resolution=complaint.resolution,
            reply=complaint.reply_sent,
            escalations=complaint.escalations,
            reviews=complaint.reviews,
            callbacks=shown["callbacks"],
            callback_attempts=shown["callback_attempts"],
            archive_summary=shown["archive_summary"],
            alerts=complaint.alerts,
            notifications=list(complaint.notifications.values()),
            clock_paused=complaint.paused_at is not None,
            personal_data_erased_at=complaint.personal_data_erased_at,
            as_of=as_of,
            position=position,
        )


def _personal_data_opened(complaint: Complaint) -> dict[str, Any]:
    """The parts of the complaint's state that hold personal data (`STATE_FIELDS`: intake,
    evidence, callbacks, …), opened for showing. A complaint read from the store keeps them
    sealed (`shared.domain.personal.Sealed`): a view opens what it shows, and only then. (Every
    role sees every one of them: masking shows part of the phone, e-mail and service number.)"""
    parts = {path[0]: getattr(complaint, path[0]) for path in STATE_FIELDS}
    return opened(parts, STATE_FIELDS)


class ErasureView(BaseModel):
    """What an erasure did."""

    customer_id: str = Field(examples=["cust-000123"])
    erased_at: datetime
    keys_destroyed: int = Field(
        examples=[1], description="0 when an earlier erasure had destroyed the key already"
    )
    complaints: list[UUID] = Field(description="the customer's complaints, each now erased")


class HistoryEntry(BaseModel):
    version: int
    type: str = Field(examples=["Accepted"])
    at: datetime
    actor: records.Actor
    service: str | None = Field(default=None, examples=["intake"])
    channel: str | None = None
    correlation_id: str | None = Field(
        default=None, description="the request's X-Request-ID: find its logs and messages"
    )
    data: dict[str, Any]
    hash: str = Field(description="SHA-256 over prev_hash and this event's canonical JSON")
    prev_hash: str


class History(BaseModel):
    complaint_id: UUID
    events: list[HistoryEntry]


def _hashed_record(complaint_id: UUID, event: StoredEvent) -> dict[str, Any]:
    """Personal fields enter by their salted digests, so the links stay the same after the
    customer's data is erased; ctx and data enter as stored, never upcast."""
    ctx, data = event.committed
    return {
        "complaint_id": str(complaint_id),
        "version": event.version,
        "type": event.type,
        "at": event.at.isoformat(),
        "ctx": ctx,
        "data": committed_data(as_record(data), event.salt),
    }


def history_of(complaint_id: UUID, events: list[StoredEvent], *, unmasked: bool) -> History:
    """The events with their hash links. Links are computed over the stored (unmasked) data, so
    they are the same whoever reads; masking only changes what is shown."""
    links = chain([_hashed_record(complaint_id, e) for e in events])
    entries = []
    for event, (prev_hash, current) in zip(events, links, strict=True):
        data = event.data
        if not unmasked and "intake" in data:
            data = {**data, "intake": masked_intake(data["intake"])}
        actor = event.ctx.get("actor") or {"id": "unknown", "role": "unknown"}
        entries.append(
            HistoryEntry(
                version=event.version,
                type=event.type,
                at=event.at,
                actor=records.Actor(id=actor["id"], role=actor["role"]),
                service=event.ctx.get("service"),
                channel=event.ctx.get("channel"),
                correlation_id=event.ctx.get("correlation_id"),
                data=data,
                hash=current,
                prev_hash=prev_hash,
            )
        )
    return History(complaint_id=complaint_id, events=entries)


class SummaryDeadline(BaseModel):
    key: str
    name: str
    due_at: datetime
    met_at: datetime | None = None
    closed_at: datetime | None = None
    state: str = Field(description="running, met, missed or closed")


class ComplaintSummary(BaseModel):
    """A complaint as lists show it (from the read model; no personal data but the id)."""

    id: UUID
    acceptance_no: str
    status: Status
    level: str
    owner: str
    channel: str
    business_type: str
    category: str
    vip_tier: str | None = None
    area: str | None = None
    customer_id: str
    department: str | None = None
    repeat_of: UUID | None = None
    incident_id: UUID | None = Field(default=None, description="its major incident, if any")
    time_barred: bool
    accepted_at: datetime
    updated_at: datetime
    version: int
    overdue: bool = Field(description="a deadline has passed without being met")
    tasks: int = Field(
        default=0, description="letters to post, calls to make, visits to pay, not yet done"
    )
    deadlines: list[SummaryDeadline]

    @classmethod
    def of(cls, row: dict[str, Any], now: datetime) -> ComplaintSummary:
        due = [
            SummaryDeadline(
                key=d["key"],
                name=d["name"],
                due_at=d["due_at"],
                met_at=d["met_at"],
                closed_at=d["closed_at"],
                state=book.state_at(
                    d["due_at"],
                    d["met_at"],
                    now,
                    closed_at=d["closed_at"],
                    stands_still=d["paused"],
                ).value,
            )
            for d in row["deadlines"]
        ]
        return cls(
            id=row["complaint_id"],
            overdue=any(
                d.met_at is None and d.closed_at is None and d.state == "missed" for d in due
            ),
            deadlines=due,
            **{k: v for k, v in row.items() if k in cls.model_fields and k != "deadlines"},
        )


class ComplaintPage(BaseModel):
    items: list[ComplaintSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")
    position: int = Field(description="global position the list has caught up with")
