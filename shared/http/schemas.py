"""Request bodies that more than one service accepts: the complaint as taken down at intake
(intake's `POST /complaints`, and escalation's `POST /appeals` for an appeal about a complaint
we never had)."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import ConfigDict, EmailStr, Field, StringConstraints, model_validator

from shared.domain.codes import (
    Area,
    BusinessType,
    Category,
    Channel,
    EvidenceKind,
    ReplyChannel,
    VipTier,
)
from shared.http.fields import (
    Identifier,
    OptionalText2000,
    RequestModel,
    Text100,
    Text500,
    Text2000,
    Text5000,
    Timestamp,
)

Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9]{5,20}$")]
ServiceNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9A-Za-z+-]{3,32}$")
]


class Customer(RequestModel):
    id: Identifier = Field(examples=["cust-000123"])
    name: Text100 = Field(examples=["张伟"])
    phone: Phone = Field(examples=["13812341234"])
    email: Annotated[EmailStr, StringConstraints(max_length=254)] | None = None
    vip_tier: VipTier | None = None


class EvidenceRef(RequestModel):
    kind: EvidenceKind
    ref: Text500 = Field(examples=["CDR-2026-11-20-0042"])
    summary: OptionalText2000 = ""


class AcceptRequest(RequestModel):
    """A complaint as the frontend took it down."""

    channel: Channel
    customer: Customer
    service_number: ServiceNumber = Field(examples=["13812341234"])
    business_type: BusinessType
    category: Category
    area: Area | None = Field(default=None, description="selects the repair limit by area")
    occurred_at: Timestamp = Field(description="when the problem happened")
    received_at: Timestamp | None = Field(
        default=None,
        description="when a letter, e-mail or web form reached us (the acceptance limit "
        "runs from here); defaults to the acceptance time",
    )
    description: Text5000 = Field(examples=["家里和公司都没有4G信号,已持续三天。"])
    demand: Text2000 = Field(examples=["尽快修复信号并减免本月流量费"])
    reply_channel: ReplyChannel
    evidence: list[EvidenceRef] = Field(default_factory=list, max_length=50)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "channel": "hotline",
                    "customer": {
                        "id": "cust-000123",
                        "name": "张伟",
                        "phone": "13812341234",
                        "vip_tier": "gold",
                    },
                    "service_number": "13812341234",
                    "business_type": "mobile",
                    "category": "network_coverage",
                    "occurred_at": "2026-11-20T08:30:00+08:00",
                    "description": "家里和公司都没有4G信号,已持续三天。",
                    "demand": "尽快修复信号并减免本月流量费",
                    "reply_channel": "sms",
                }
            ]
        },
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.reply_channel == ReplyChannel.EMAIL and not self.customer.email:
            raise ValueError("reply_channel 'email' needs customer.email")
        if self.received_at and self.received_at < self.occurred_at:
            raise ValueError("received_at cannot be before occurred_at")
        return self

    def intake(self) -> dict[str, Any]:
        """The facts as stored in the Accepted event (JSON types only)."""
        return self.model_dump(mode="json")
