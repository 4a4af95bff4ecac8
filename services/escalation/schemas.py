"""Request bodies of escalation's commands (docs/api.md), and what its reads of major incidents
answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.domain.codes import (
    Area,
    Category,
    EscalationTrigger,
    IncidentAction,
    Level,
    NotEscalated,
    ReviewOutcome,
    Status,
)
from shared.domain.indexes import MajorIncident
from shared.http.fields import Identifier, RequestModel, Text2000, Timestamp
from shared.http.schemas import AcceptRequest

RegulatorRef = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9._:/-]{1,64}$")
]


class EscalationRequest(RequestModel):
    """Hand the complaint to a higher level (投诉升级)."""

    trigger: EscalationTrigger = Field(
        description="a regulator appeal with its reference and deadline comes in through "
        "POST /appeals"
    )
    reason: Text2000 = Field(examples=["客户对处理结果不满意,要求上级复核"])
    to_level: Literal[Level.PROVINCIAL, Level.HEADQUARTERS]


class HandlerRequest(RequestModel):
    """Name the person who handles the complaint at its level (专人负责)."""

    handler: Identifier = Field(examples=["prov-sup-017"])


class ReviewRequest(RequestModel):
    """The higher level's review: the handling stands (upheld) or starts again (revised)."""

    outcome: ReviewOutcome
    notes: Text2000 = Field(examples=["原处理结论依据充分,维持"])


class AppealRequest(RequestModel):
    """A complaint forwarded by the regulator (申诉): about one we know by its acceptance
    number, or a new one with the full intake body."""

    regulator_ref: RegulatorRef = Field(examples=["MIIT-SS-2026-004211"])
    due_at: Timestamp = Field(description="the regulator's own deadline")
    reason: Text2000 = Field(default="Regulator appeal (申诉)", examples=["用户向工信部申诉"])
    acceptance_no: (
        Annotated[str, StringConstraints(pattern=r"^[0-9]{6}-[0-9]{6}-[0-9]$")] | None
    ) = None
    complaint: AcceptRequest | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.acceptance_no is None) == (self.complaint is None):
            raise ValueError("give either acceptance_no or complaint, not both or neither")
        return self


# ------------------------------------------------------------------------ major incidents
class IncidentWindow(BaseModel):
    """When the incident's complaints came in. It is open, and complaints of its category
    and area accepted meanwhile join it, until one window after the last that counts."""

    model_config = ConfigDict(validate_by_name=True)

    from_: datetime = Field(alias="from", description="when its first complaint was accepted")
    to: datetime = Field(
        description="one window after its last complaint that counts (a refused one does not)"
    )
    open: bool = Field(description="a complaint of its category and area accepted now joins it")


class IncidentSummary(BaseModel):
    """A declared major incident (群体性投诉), as the list shows it (from the read model)."""

    id: UUID
    number: int = Field(examples=[1], description="the n-th incident of its category and area")
    category: Category
    area: Area
    declared_at: datetime
    window: IncidentWindow
    members: int = Field(examples=[23], description="complaints linked to it")
    escalated: int = Field(examples=[21], description="of those, how many it escalated")

    @classmethod
    def of(cls, row: dict[str, Any], now: datetime) -> IncidentSummary:
        return cls(
            id=row["incident_id"],
            number=row["number"],
            category=row["category"],
            area=row["area"],
            declared_at=row["declared_at"],
            window=IncidentWindow(
                from_=row["first_member_at"], to=row["closes_at"], open=now <= row["closes_at"]
            ),
            members=row["members"],
            escalated=row["escalated"],
        )


class IncidentPage(BaseModel):
    items: list[IncidentSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class IncidentComplaint(BaseModel):
    """One complaint of the incident: what the incident did with it, and where it is now."""

    complaint_id: UUID
    accepted_at: datetime
    done: IncidentAction = Field(
        description="escalated one level up (trigger major_incident), or only linked"
    )
    from_level: Level | None = Field(default=None, description="escalated: the level it left")
    to_level: Level | None = Field(default=None, description="escalated: the level it went to")
    why: NotEscalated | None = Field(
        default=None,
        description="linked: why it did not go up (refused, archived, already at "
        "headquarters, or its status allows no escalation)",
    )
    status: Status | None = Field(
        description="its status now (from the read model; null until that has seen it)"
    )
    level: Level | None = Field(description="its level now (as `status`)")


class IncidentView(IncidentSummary):
    """A major incident rebuilt from its events, with every complaint linked to it."""

    threshold: int = Field(
        examples=[20], description="complaints within the window that declare one (then)"
    )
    window_minutes: int = Field(examples=[60], description="the window's length (then)")
    complaints: list[IncidentComplaint]

    @classmethod
    def of_incident(
        cls, incident: MajorIncident, states: dict[UUID, tuple[str, str]], now: datetime
    ) -> IncidentView:
        complaints = []
        for member in incident.members:
            status, level = states.get(UUID(member["complaint_id"]), (None, None))
            complaints.append(
                IncidentComplaint.model_validate({**member, "status": status, "level": level})
            )
        return cls(
            id=incident.id,
            number=incident.number,
            category=incident.category,
            area=incident.area,
            declared_at=incident.declared_at,
            window=IncidentWindow(
                from_=incident.first_member_at,
                to=incident.closes_at,
                open=incident.is_open(now),
            ),
            members=len(complaints),
            escalated=sum(1 for c in complaints if c.done == IncidentAction.ESCALATED),
            threshold=incident.threshold,
            window_minutes=incident.window_minutes,
            complaints=complaints,
        )
