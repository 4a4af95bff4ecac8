"""Request bodies of intake's commands (docs/api.md)."""

from __future__ import annotations

from pydantic import Field

from shared.domain.codes import RefusalReason
from shared.http.fields import RequestModel, Text500, Text2000
from shared.http.schemas import AcceptRequest

__all__ = ["AcceptRequest", "RefusalRequest"]


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
