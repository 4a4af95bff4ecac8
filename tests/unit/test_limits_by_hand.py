"""A complaint's limits through its commands, each expected time worked out by hand.

NOW is Monday 23 Nov 2026, 10:00 in Beijing (02:00 UTC); a working day ends at 23:59:59 in
Beijing (15:59:59 UTC); November and December 2026 have no public holiday in China. The
complaint is a fixed-line billing complaint by phone unless a test says otherwise, so its
reply (3 working days), investigation (72 hours) and resolution (5 working days) are pausable
and the operator's answer (15 calendar days) is not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from shared.domain.codes import Complexity, RefusalReason, Satisfaction
from shared.domain.complaint import Complaint
from shared.domain.context import Actor, CommandContext
from shared.domain.errors import InvalidCommand, InvalidTransition
from shared.domain.policy import DEFAULT_POLICY_PATH, Policy

POLICY = Policy.load()
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def z(text: str) -> str:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).isoformat()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sup(when: datetime) -> CommandContext:
    return CommandContext(Actor("sup-1", "supervisor"), "test", when, "hotline")


def accepted(policy: Policy = POLICY, **intake: Any) -> Complaint:
    body: dict[str, Any] = {
        "channel": "hotline",
        "customer": {"id": "c1", "name": "n", "phone": "13800000000", "vip_tier": None},
        "service_number": "13800000000",
        "business_type": "fixed_line",
        "category": "billing",
        "area": None,
        "occurred_at": "2026-11-20T00:00:00+00:00",
        "received_at": None,
        "description": "d",
        "demand": "d",
        "reply_channel": "sms",
        "evidence": [],
        **intake,
    }
    return Complaint.accept(
        complaint_id=uuid4(),
        acceptance_no="261123-000001-8",
        intake=body,
        repeat_of=None,
        policy=policy,
        ctx=CommandContext(Actor("agent-1", "agent"), "test", NOW, "hotline"),
    )


def dues(c: Complaint) -> dict[str, str]:
    return {key: d["due_at"] for key, d in c.deadlines.items()}


def states(c: Complaint, now: datetime) -> dict[str, str]:
    return {d["key"]: d["state"] for d in c.deadline_states(now)}


def test_a_letter_assessed_complex_gets_the_complex_investigation() -> None:
    c = accepted(channel="letter", received_at="2026-11-21T09:00:00+08:00")
    # Received Saturday 09:00: 24 hours to accept; accepted on Monday, late.
    assert c.deadlines["acceptance"]["due_at"] == z("2026-11-22T01:00")
    assert c.deadlines["acceptance"]["met_at"] == z("2026-11-23T02:00")
    assert states(c, NOW)["acceptance"] == "missed"
    c.assign("net", "inv-7", Complexity.COMPLEX, POLICY, sup(at("2026-11-23T03:00")))
    # Counted from the acceptance: 5 working days (24, 25, 26, 27, 30 Nov), then 6 (1 Dec).
    assert dues(c) == {
        "acceptance": z("2026-11-22T01:00"),
        "investigation": z("2026-11-30T15:59:59"),
        "reply": z("2026-12-01T15:59:59"),
        "resolution": z("2026-12-01T15:59:59"),
        "operator_answer": z("2026-12-08T02:00"),
    }
    assert c.deadlines["investigation"]["amount"] == 5
    assert c.deadlines["investigation"]["unit"] == "working_days"


def test_a_refusal_closes_every_running_limit() -> None:
    c = accepted()
    refused_at = at("2026-11-23T05:00")
    c.refuse(RefusalReason.OUT_OF_SCOPE, "why", "where", sup(refused_at))
    assert {k: (d["closed_at"], d["closed_by"]) for k, d in c.deadlines.items()} == {
        "investigation": (z("2026-11-23T05:00"), "Refused"),
        "reply": (z("2026-11-23T05:00"), "Refused"),
        "resolution": (z("2026-11-23T05:00"), "Refused"),
        "operator_answer": (z("2026-11-23T05:00"), "Refused"),
    }
    later = at("2026-12-31T00:00")  # long after every one was due
    assert set(states(c, later).values()) == {"closed"}
    assert c.running_limits(later) == []


def test_an_archive_closes_a_limit_still_running() -> None:
    # The default policy with one more limit nothing in this path meets: a quality review.
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8") + (
        "\n[[limit]]\nname = 'quality_review'\namount = 30\nunit = 'calendar_days'\n"
        "met_by = ['Reviewed']\n"
    )
    policy = Policy.from_toml(text)
    c = accepted(policy)
    assert c.deadlines["quality_review"]["due_at"] == z("2026-12-23T02:00")  # 30 days
    c.assign("net", "inv-7", Complexity.SIMPLE, policy, sup(at("2026-11-23T03:00")))
    c.record_findings("c", "b", "r", False, sup(at("2026-11-24T02:00")))
    c.reply("sms", "c", "b", "p", "e", policy, sup(at("2026-11-24T03:00")))
    c.record_callback(Satisfaction.SATISFIED, True, "ok", policy, sup(at("2026-11-25T02:00")))
    assert c.running_limits(at("2026-11-25T02:00")) == ["quality_review", "archive"]
    c.archive("done", sup(at("2026-11-26T02:00")))
    review = c.deadlines["quality_review"]
    assert (review["closed_at"], review["closed_by"]) == (z("2026-11-26T02:00"), "Archived")
    assert states(c, at("2027-01-31T00:00"))["quality_review"] == "closed"
    assert c.deadlines["archive"]["met_at"] == z("2026-11-26T02:00")
    assert c.running_limits(at("2026-11-26T02:00")) == []


def test_a_resumed_clock_moves_the_pausable_limits_by_the_pause() -> None:
    c = accepted()
    c.assign("net", "inv-7", Complexity.SIMPLE, POLICY, sup(at("2026-11-23T02:06")))
    c.pause_clock("waiting for the customer's bill", sup(at("2026-11-23T03:00")))
    # Paused, the pausable limits do not pass: three days on, the investigation still runs.
    paused = states(c, at("2026-11-27T00:00"))
    assert paused["investigation"] == "running" and paused["reply"] == "running"
    c.resume_clock(sup(at("2026-11-23T05:30")))  # two and a half hours later
    assert dues(c) == {
        "investigation": z("2026-11-26T04:30"),  # 72 hours, + 2 h 30
        "reply": z("2026-11-26T18:29:59"),  # end of Thu 26 Nov, + 2 h 30
        "resolution": z("2026-11-30T18:29:59"),  # end of Mon 30 Nov, + 2 h 30
        "operator_answer": z("2026-12-08T02:00"),  # not pausable
    }
    assert c.paused_at is None
    resumed = states(c, at("2026-11-27T00:00"))
    assert resumed["investigation"] == "missed" and resumed["reply"] == "missed"


def test_a_limit_escalates_only_once_it_has_passed() -> None:
    c = accepted()
    due = at("2026-11-26T02:00")  # the investigation: 72 hours
    with pytest.raises(InvalidTransition, match="investigation is not due"):
        c.escalate_missed("investigation", POLICY, sup(due))
    assert states(c, due)["investigation"] == "running"
    c.escalate_missed("investigation", POLICY, sup(due + US))
    assert c.deadlines["investigation"]["escalated_at"] == "2026-11-26T02:00:00.000001+00:00"
    assert c.level == "provincial"


def test_an_extension_up_to_the_policys_latest_date_and_not_after_the_limit() -> None:
    c = accepted()
    c.assign("net", "inv-7", Complexity.COMPLEX, POLICY, sup(at("2026-11-23T03:00")))
    first_due = at("2026-11-30T15:59:59")
    # 10 working days after Mon 30 Nov: 1, 2, 3, 4, 7, 8, 9, 10, 11, 14 Dec.
    latest = at("2026-12-14T15:59:59")
    with pytest.raises(InvalidCommand, match="2026-12-14T15:59:59"):
        c.extend("vendor", latest + US, "notice", POLICY, sup(first_due))
    with pytest.raises(InvalidCommand, match="later than the current"):
        c.extend("vendor", first_due, "notice", POLICY, sup(first_due))
    with pytest.raises(InvalidTransition, match="has passed"):
        c.extend("vendor", latest, "notice", POLICY, sup(first_due + US))
    c.extend("vendor", latest, "notice", POLICY, sup(first_due))  # at the due instant: in time
    assert c.deadlines["investigation"]["due_at"] == z("2026-12-14T15:59:59")
    assert c.deadlines["investigation"]["original_due_at"] == z("2026-11-30T15:59:59")
    assert c.extensions[0]["moved"] == ["investigation", "reply", "resolution"]
    assert c.extensions[0]["previous_due_at"] == z("2026-11-30T15:59:59")
