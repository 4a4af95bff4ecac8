"""Request bodies of investigation's commands (docs/api.md)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from shared.domain.codes import Complexity, EvidenceKind, RemedyType, ReplyChannel
from shared.http.fields import (
    Flag,
    Identifier,
    OptionalText2000,
    RequestModel,
    Text500,
    Text2000,
    Text5000,
    Timestamp,
)

_MONEY = re.compile(r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$")


def _decimal_string(value: Any) -> Any:
    """Money is a decimal string in yuan, e.g. "128.50": a JSON number could already have lost
    precision, and exponents or signs have no place in an amount."""
    if not isinstance(value, str) or not _MONEY.match(value):
        raise ValueError(
            'money must be a plain decimal string with at most 2 decimals, e.g. "128.50"'
        )
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_decimal_string),
    Field(ge=0, max_digits=14, decimal_places=2),
    PlainSerializer(lambda d: str(d), return_type=str),
    # What the server takes: a string (a JSON number is refused), whatever Decimal allows.
    WithJsonSchema({"type": "string", "pattern": _MONEY.pattern, "examples": ["128.50"]}),
]


class AssignmentRequest(RequestModel):
    """Route to the responsible department and one named investigator (专人负责)."""

    department: Identifier = Field(examples=["network-ops-shenzhen"])
    investigator: Identifier = Field(examples=["inv-0042"])
    complexity: Complexity = Field(description="picks the investigation time limit")


class EvidenceRequest(RequestModel):
    kind: EvidenceKind
    ref: Text500 = Field(examples=["CDR-2026-11-20-0042"])
    summary: OptionalText2000 = Field(default="", examples=["三天内基站 4417 告警 37 次"])


class ExtensionRequest(RequestModel):
    """More time for a complex complaint; the customer is told why (告知进展)."""

    reason: Text2000 = Field(examples=["需要厂家到场检测基站设备"])
    new_due_at: Timestamp
    progress_notice: Text2000 = Field(
        description="sent to the customer", examples=["您的投诉正在处理中,预计 12 月 5 日前答复。"]
    )


class FindingsRequest(RequestModel):
    conclusion: Text5000 = Field(examples=["基站 4417 传输故障导致该区域无 4G 信号"])
    basis: Text2000 = Field(
        description="the policy or rule applied", examples=["《网络服务质量规范》第 7 条"]
    )
    root_cause: Text500 = Field(examples=["transmission_fault"])
    upheld: Flag


class Remedy(RequestModel):
    type: RemedyType
    amount: Money | None = Field(default=None, description="required for refund, compensation")

    @model_validator(mode="after")
    def _amount_where_money_moves(self) -> Self:
        if self.type in (RemedyType.REFUND, RemedyType.COMPENSATION) and self.amount is None:
            raise ValueError(f"a {self.type.value} needs an amount")
        return self


class ResolutionRequest(RequestModel):
    measures: list[Text2000] = Field(min_length=1, max_length=20, examples=[["更换基站传输板"]])
    remedies: list[Remedy] = Field(default_factory=list, max_length=10)
    owner: Identifier = Field(examples=["eng-0007"])
    due_at: Timestamp

    model_config = ConfigDict(extra="forbid")

    def remedy_records(self) -> list[dict[str, str | None]]:
        """As stored: amounts stay exact decimal strings."""
        return [
            {"type": r.type.value, "amount": None if r.amount is None else str(r.amount)}
            for r in self.remedies
        ]


class ReplyRequest(RequestModel):
    """The answer to the customer, through the channel the customer chose."""

    channel: ReplyChannel
    conclusion: Text5000
    basis: Text2000
    plan: Text2000
    execution: Text2000 = Field(description="how far the plan has been carried out")


class ConfirmationRequest(RequestModel):
    """A message staff carried out (a letter posted, a call made, a visit paid)."""

    note: Text500 = Field(examples=["挂号信 XA123456 已寄出"])


class PauseRequest(RequestModel):
    """Stop the pausable limits while waiting on the customer (every pause is an event)."""

    reason: Text500 = Field(examples=["等待客户提供缴费凭证"])


class ResumeRequest(RequestModel):
    """Start the paused limits again; each moves on by the time it stood still."""
