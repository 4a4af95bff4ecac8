"""Request bodies of escalation's commands (api.md)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from shared.domain.codes import EscalationTrigger, Level, ReviewOutcome
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
