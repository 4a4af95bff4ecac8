"""Request bodies of callback's commands (docs/api.md)."""

from __future__ import annotations

from typing import Self

from pydantic import ConfigDict, Field, model_validator

from shared.domain.codes import Satisfaction
from shared.http.fields import Flag, OptionalText2000, RequestModel, Text5000


class CallbackRequest(RequestModel):
    """The follow-up call (回访): is the problem really solved, and how satisfied is the
    customer? Dissatisfied or unresolved escalates the complaint; it is never closed so."""

    satisfaction: Satisfaction | None = Field(default=None, description="required if reached")
    resolved: Flag | None = Field(default=None, description="required if reached")
    comments: OptionalText2000 = Field(default="", examples=["信号已恢复,客户表示满意"])
    reached: Flag = Field(
        default=True, description="false records an attempt that did not reach the customer"
    )

    model_config = ConfigDict(
        extra="forbid",
        # The rule below, as JSON Schema says it: unless `reached` is false, both answers.
        json_schema_extra={
            "if": {"properties": {"reached": {"const": False}}, "required": ["reached"]},
            "else": {
                "required": ["satisfaction", "resolved"],
                "properties": {
                    "satisfaction": {"enum": [s.value for s in Satisfaction]},
                    "resolved": {"type": "boolean"},
                },
            },
        },
    )

    @model_validator(mode="after")
    def _answers_when_reached(self) -> Self:
        if self.reached and (self.satisfaction is None or self.resolved is None):
            raise ValueError("a callback that reached the customer needs satisfaction and resolved")
        return self


class ArchiveRequest(RequestModel):
    """File the complaint (归档): its content, handling, result and feedback are kept."""

    summary: Text5000 = Field(examples=["基站故障已修复,减免 30 元,客户满意。"])
