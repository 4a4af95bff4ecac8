"""What the customer is told, and how: in the way they chose (domain.md, seed 002 §4).

Every message is requested by the event that calls for it: the acknowledgement with the
acceptance number at acceptance, the reason and where else to turn on a refusal, a progress
notice when the investigation takes longer, and the reply. SMS and e-mail leave through the
gateway (the investigation service's dispatcher). A letter, a phone call or a visit is a task
for staff, visible in the list until someone records it as done. Nothing is sent by SMS that the
customer did not choose. At a hotline or a business hall the agent tells the customer the
acceptance number there and then: that acknowledgement is recorded as given, not sent again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from shared.domain.codes import Channel, RefusalReason, ReplyChannel


class Kind(StrEnum):
    ACKNOWLEDGEMENT = "acknowledgement"
    REFUSAL = "refusal"
    PROGRESS_NOTICE = "progress_notice"
    REPLY = "reply"


class Reason(StrEnum):
    """Why a reply date moved without staff writing a notice."""

    COMPLEX = "complex"  # the assignment found the complaint complex
    CALENDAR = "calendar"  # the official holiday schedule replaced an estimate


#: Reply channels the gateway delivers; the others are staff tasks.
GATEWAY = frozenset({ReplyChannel.SMS, ReplyChannel.EMAIL})
#: Intake channels where the customer is talking to an agent who reads out the answer.
LIVE = frozenset({Channel.HOTLINE, Channel.BUSINESS_HALL})


def told_live(kind: Kind, intake_channel: str, reply_channel: str) -> bool:
    """An acknowledgement the accepting agent gives in the call or at the counter, when the
    customer chose no written channel: recorded as given, no message and no task."""
    return kind is Kind.ACKNOWLEDGEMENT and intake_channel in LIVE and reply_channel not in GATEWAY


def is_task(channel: str) -> bool:
    """A letter to post, a call to make or a visit: staff do it and record it as done."""
    return channel not in GATEWAY


_REASONS = {
    RefusalReason.OUT_OF_SCOPE: "所反映问题不属于本公司责任范围",
    RefusalReason.TIME_BARRED: "已超过投诉时效",
    RefusalReason.REPEAT_WITH_CONCLUSION: "同一问题已有处理结论,且未提出新的事实和理由",
}


_MOVED = {
    Reason.COMPLEX: "您的投诉经评估较为复杂,我们将在{}前答复您。",
    Reason.CALENDAR: "根据国家公布的节假日安排,我们将在{}前答复您。",
}


def _local(value: str | None, tz: ZoneInfo) -> str:
    if not value:
        return "—"
    return datetime.fromisoformat(value).astimezone(tz).strftime("%Y年%m月%d日%H:%M")


def text(
    notification: Mapping[str, Any],
    *,
    acceptance_no: str,
    data: Mapping[str, Any],
    tz: ZoneInfo,
) -> str:
    """The message for a notification, from what the event that asked for it recorded
    (`data`) and the dates the notification itself carries."""
    kind = Kind(notification["kind"])
    dates = notification.get("dates") or {}
    if kind is Kind.ACKNOWLEDGEMENT:
        lines = [
            f"【投诉受理 {acceptance_no}】您的投诉已受理,受理编号 {acceptance_no}。",
            f"我们将安排专人调查处理,并在{_local(dates.get('reply'), tz)}前答复您。",
        ]
        if dates.get("repair"):
            lines.append(f"故障修复承诺时限:{_local(dates['repair'], tz)}。")
        if dates.get("installation"):
            lines.append(f"装移机承诺时限:{_local(dates['installation'], tz)}。")
        return "".join(lines)
    if kind is Kind.REFUSAL:
        reason = _REASONS.get(RefusalReason(data["reason"]), data["reason"])
        return (
            f"【投诉不予受理 {acceptance_no}】很抱歉,您的投诉不予受理:{reason}。"
            f"{data['explanation']} 您可以:{data['redirect']}"
        )
    if kind is Kind.PROGRESS_NOTICE:
        notice = data.get("progress_notice") or _MOVED[
            Reason(notification.get("why") or Reason.COMPLEX)
        ].format(_local(dates.get("reply"), tz))
        return f"【投诉进展 {acceptance_no}】{notice}"
    return (
        f"【投诉答复 {acceptance_no}】结论:{data['conclusion']} 依据:{data['basis']} "
        f"处理方案:{data['plan']} 执行情况:{data['execution']}"
    )
