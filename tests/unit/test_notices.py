"""The customer is told, in the way they chose: what each event asks to send, and by whom."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.codes import Complexity, RefusalReason
from shared.domain.errors import InvalidCommand, InvalidTransition
from shared.domain.notices import text
from tests.unit.test_lifecycle_invariant import as_
from tests.unit.test_next_limits import at
from tests.unit.test_transitions import NOW, POLICY, new_complaint


def summary(notifications: dict[str, dict[str, object]]) -> list[tuple[object, ...]]:
    return [
        (n["id"], n["kind"], n["channel"], n["task"], n["status"]) for n in notifications.values()
    ]


def test_a_hotline_agent_reads_out_the_acknowledgement_when_no_written_channel_was_chosen() -> None:
    c = new_complaint(reply_channel="phone")
    assert summary(c.notifications) == [("ack-1", "acknowledgement", "hotline", False, "sent")]
    ack = c.notifications["ack-1"]
    assert ack["confirmed_by"] == {"id": "agent-1", "role": "agent"}
    assert ack["sent_at"] == NOW.isoformat()
    # Mobile billing: the reply is due in 2 working days, the end of Wed 25 Nov.
    assert ack["dates"] == {"reply": "2026-11-25T15:59:59+00:00"}


def test_an_sms_customer_gets_the_acknowledgement_by_sms_even_at_the_hotline() -> None:
    c = new_complaint()
    assert summary(c.notifications) == [("ack-1", "acknowledgement", "sms", False, "pending")]


def test_a_letter_is_a_task_for_staff_until_they_confirm_it() -> None:
    c = new_complaint(channel="web", reply_channel="letter")
    assert summary(c.notifications) == [("ack-1", "acknowledgement", "letter", True, "pending")]
    with pytest.raises(InvalidCommand, match="task"):
        c.record_notification("ack-1", sent=True, detail="gw-1", ctx=as_("system", at(1)))
    c.confirm_notification("ack-1", "挂号信 XA123 已寄出", as_("agent", at(2), "agent-5"))
    ack = c.notifications["ack-1"]
    assert (ack["status"], ack["note"], ack["sent_at"]) == (
        "sent",
        "挂号信 XA123 已寄出",
        at(2).isoformat(),
    )
    assert ack["confirmed_by"] == {"id": "agent-5", "role": "agent"}
    with pytest.raises(InvalidTransition):
        c.confirm_notification("ack-1", "again", as_("agent", at(3)))


def test_a_message_for_the_gateway_is_not_confirmed_by_staff() -> None:
    c = new_complaint()
    with pytest.raises(InvalidCommand, match="gateway"):
        c.confirm_notification("ack-1", "done", as_("agent", at(1)))
    with pytest.raises(InvalidCommand):
        c.confirm_notification("ack-9", "done", as_("agent", at(1)))


def test_a_refusal_tells_the_customer_through_their_channel() -> None:
    c = new_complaint(reply_channel="phone")
    c.refuse(RefusalReason.OUT_OF_SCOPE, "第三方业务", "请联系商家", as_("agent", at(1)))
    assert summary(c.notifications)[1] == ("refusal-1", "refusal", "phone", True, "pending")


def test_a_complex_assessment_that_moves_the_reply_tells_the_customer_the_new_date() -> None:
    c = new_complaint(business_type="fixed_line")
    # Fixed line: the reply was promised within 3 working days (Thu 26 Nov).
    assert c.notifications["ack-1"]["dates"]["reply"] == "2026-11-26T15:59:59+00:00"
    c.assign("net", "inv-7", Complexity.COMPLEX, POLICY, as_("supervisor", at(1)))
    progress = c.notifications["progress-1"]
    assert progress["kind"] == "progress_notice"
    assert progress["dates"] == {"reply": "2026-12-01T15:59:59+00:00"}  # 6 working days
    simple = new_complaint(business_type="fixed_line")
    simple.assign("net", "inv-7", Complexity.SIMPLE, POLICY, as_("supervisor", at(1)))
    assert "progress-1" not in simple.notifications  # nothing new to tell


TZ = POLICY.tz


def test_the_acknowledgement_names_the_number_and_the_dates() -> None:
    notification = {
        "kind": "acknowledgement",
        "dates": {"reply": "2026-11-25T15:59:59+00:00", "repair": "2026-11-24T02:00:00+00:00"},
    }
    assert text(notification, acceptance_no="261123-000001-8", data={}, tz=TZ) == (
        "【投诉受理 261123-000001-8】您的投诉已受理,受理编号 261123-000001-8。"
        "我们将安排专人调查处理,并在2026年11月25日23:59前答复您。"
        "故障修复承诺时限:2026年11月24日10:00。"
    )


def test_a_refusal_says_why_and_where_else_to_turn() -> None:
    data = {
        "reason": "time_barred",
        "explanation": "事发已逾两年。",
        "redirect": "可向消费者协会反映",
    }
    assert text({"kind": "refusal"}, acceptance_no="N-1", data=data, tz=TZ) == (
        "【投诉不予受理 N-1】很抱歉,您的投诉不予受理:已超过投诉时效。事发已逾两年。 "
        "您可以:可向消费者协会反映"
    )


def test_progress_notices_and_replies() -> None:
    staff = text(
        {"kind": "progress_notice"},
        acceptance_no="N-1",
        data={"progress_notice": "预计 12 月 8 日前答复。"},
        tz=TZ,
    )
    assert staff == "【投诉进展 N-1】预计 12 月 8 日前答复。"
    automatic = text(
        {"kind": "progress_notice", "dates": {"reply": "2026-12-01T15:59:59+00:00"}},
        acceptance_no="N-1",
        data={},
        tz=TZ,
    )
    assert (
        automatic == "【投诉进展 N-1】您的投诉经评估较为复杂,我们将在2026年12月01日23:59前答复您。"
    )
    reply = text(
        {"kind": "reply"},
        acceptance_no="N-1",
        data={"conclusion": "已修复", "basis": "第7条", "plan": "减免", "execution": "已完成"},
        tz=TZ,
    )
    assert reply == "【投诉答复 N-1】结论:已修复 依据:第7条 处理方案:减免 执行情况:已完成"


def test_dates_read_in_beijing_time() -> None:
    late = {
        "kind": "acknowledgement",
        "dates": {"reply": datetime(2026, 11, 30, 16, tzinfo=UTC).isoformat()},
    }
    assert "2026年12月01日00:00" in text(late, acceptance_no="N", data={}, tz=TZ)


def test_replaying_what_the_first_version_stored_sends_nothing() -> None:
    """Its Accepted and Refused events asked for no message: when the read models are
    rebuilt from them, no acknowledgement or refusal goes out years later."""
    c = new_complaint()
    c.refuse(RefusalReason.OUT_OF_SCOPE, "第三方业务", "请联系商家", as_("agent", at(1)))
    events = c.collect_events()
    for stored in events:
        stored.__dict__.pop("acknowledge", None)  # as the first version stored them
        stored.__dict__.pop("tell", None)
    replayed = None
    for stored in events:
        replayed = stored.mutate(replayed)
    assert replayed is not None and replayed.status == "refused"
    assert replayed.notifications == {}


def test_erasure_voids_the_staff_tasks_left() -> None:
    c = new_complaint(channel="web", reply_channel="letter")
    c.erase_personal_data(as_("admin", at(1)))
    ack = c.notifications["ack-1"]
    assert (ack["status"], ack["last_error"]) == (
        "failed",
        "the customer's contact details were erased",
    )
