"""Request bodies of intake's commands (api.md)."""

from __future__ import annotations

from pydantic import Field

from shared.domain.codes import RefusalReason
from shared.http.fields import RequestModel, Text500, Text2000
from shared.http.schemas import AcceptRequest

__all__ = ["AcceptRequest", "RefusalRequest"]


class RefusalRequest(RequestModel):
    """Not accepted (不予受理): the reason, and where else the customer can go."""

    reason: RefusalReason
    explanation: Text2000 = Field(examples=["所述问题属于第三方应用服务,不属于本公司责任范围。"])
    redirect: Text500 = Field(examples=["请联系应用提供商客服,或向当地消费者协会反映。"])
