"""Request bodies of intake's commands (docs/api.md)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, JsonValue, field_validator

from shared.domain.codes import RefusalReason
from shared.http.fields import Flag, RequestModel, Text500, Text2000
from shared.http.schemas import AcceptRequest
from shared.webhooks.subscriptions import EVENT_TYPES, RECEIVER_URL_PATTERN, url_refusal

#: The event types as the OpenAPI schema lists them (each item of `event_types`).
_EVENT_TYPES: list[JsonValue] = [*sorted(EVENT_TYPES)]

__all__ = [
    "AcceptRequest",
    "AttemptView",
    "DeliveryView",
    "RefusalRequest",
    "SubscriptionCreated",
    "SubscriptionRequest",
    "SubscriptionView",
]


class RefusalRequest(RequestModel):
    """Not accepted (不予受理): the reason, and where else the customer can go."""

    reason: RefusalReason = Field(
        description="time_barred only if intake flagged the complaint as past the limitation "
        "period (or a supervisor gives override_reason); repeat_with_conclusion only if it "
        "repeats a complaint that was replied or archived"
    )
    explanation: Text2000 = Field(examples=["所述问题属于第三方应用服务,不属于本公司责任范围。"])
    redirect: Text500 = Field(examples=["请联系应用提供商客服,或向当地消费者协会反映。"])
    override_reason: Text2000 | None = Field(
        default=None,
        description="a supervisor's reason to refuse as time_barred a complaint the limitation "
        "check did not flag",
        examples=["客户提供的发生时间有误,经核实已逾两年"],
    )


class SubscriptionRequest(RequestModel):
    """A receiver and the events it is to be sent."""

    url: str = Field(
        max_length=2048,
        description="where deliveries are POSTed: https, a public address (http and local "
        "addresses only where COMPLAINTS_WEBHOOK_LOCAL_URLS or development allows them)",
        examples=["https://crm.example.cn/hooks/complaints"],
        # (stated here, checked with a reason in `_http_url`)
        json_schema_extra={"format": "uri", "pattern": RECEIVER_URL_PATTERN},
    )
    event_types: list[str] = Field(
        min_length=1,
        max_length=len(EVENT_TYPES),
        description="`<aggregate>.<event>`, as the audit export names them; any of: "
        + ", ".join(sorted(EVENT_TYPES)),
        examples=[["Complaint.Accepted", "Complaint.Replied"]],
        json_schema_extra={"items": {"type": "string", "enum": _EVENT_TYPES}},
    )
    sees_personal_data: Flag = Field(
        default=False,
        description="send customers' personal data in plaintext; otherwise each field is the "
        "salted digest the audit chain commits to, as the regulator's export shows it",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        refusal = url_refusal(value, local_allowed=True)
        if refusal:
            raise ValueError(refusal)
        return value

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - EVENT_TYPES)
        if unknown:
            raise ValueError(
                f"unknown event type(s) {', '.join(unknown)}; allowed: "
                + ", ".join(sorted(EVENT_TYPES))
            )
        return value


class SubscriptionView(BaseModel):
    id: str
    url: str
    event_types: list[str]
    sees_personal_data: bool
    created_at: datetime
    created_by: str


class SubscriptionCreated(SubscriptionView):
    secret: str | None = Field(
        description="the signing secret (Standard Webhooks, `whsec_…`): shown this once, kept "
        "sealed under the key-encryption key. Null on a replay of an Idempotency-Key: it is "
        "never stored in the clear"
    )


class AttemptView(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None = Field(description="the receiver's answer; null if none came")
    error: str | None
    duration_ms: float


class DeliveryView(BaseModel):
    webhook_id: str = Field(description="the `webhook-id` header: the same on every attempt")
    position: int = Field(description="the event's place in the store's global order")
    event_type: str
    event_at: datetime
    status: str = Field(description="pending, delivered, failed (attempts ran out), cancelled")
    attempts: list[AttemptView]
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    finished_at: datetime | None
