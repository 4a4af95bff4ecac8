"""Acceptance and assignment, by hand: the id the application chose, the limitation check on
the right category, the times a frontend may send, the complexity's limits, and the messages
each step asks for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from shared.domain.codes import Complexity
from shared.domain.complaint import Complaint
from shared.domain.context import Actor, CommandContext
from shared.domain.errors import InvalidCommand
from shared.domain.policy import DEFAULT_POLICY_PATH, Policy
from tests.unit.test_complaint_errors import assigned, replied
from tests.unit.test_transitions import NOW, POLICY, ctx, intake_of, new_complaint


def accept(policy: Policy = POLICY, **overrides: object) -> Complaint:
    return Complaint.accept(
        complaint_id=uuid4(),
        acceptance_no="261123-000001-8",
        intake=intake_of(**overrides),
        repeat_of=None,
        policy=policy,
        ctx=CommandContext(Actor("agent-1", "agent"), "test", NOW, "hotline"),
    )


def test_the_complaint_keeps_the_id_the_application_chose() -> None:
    chosen = uuid4()
    complaint = Complaint.accept(
        complaint_id=chosen,
        acceptance_no="261123-000001-8",
        intake=intake_of(),
        repeat_of=None,
        policy=POLICY,
        ctx=CommandContext(Actor("agent-1", "agent"), "test", NOW, "hotline"),
    )
    assert complaint.id == chosen


def test_a_fee_dispute_is_time_barred_after_five_months_others_after_two_years() -> None:
    six_months_ago = (NOW - timedelta(days=183)).isoformat()
    assert accept(category="billing", occurred_at=six_months_ago).time_barred is True
    assert accept(category="network_quality", occurred_at=six_months_ago).time_barred is False


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(minutes=5), -timedelta(days=1)])
def test_times_up_to_five_minutes_ahead_of_our_clock_are_accepted(offset: timedelta) -> None:
    """A frontend's clock may run a little ahead; an event just now is no event "in the
    future"."""
    complaint = accept(occurred_at=(NOW + offset).isoformat())
    assert complaint.intake["occurred_at"] == (NOW + offset).isoformat()


def test_a_letter_received_later_than_our_clock_allows_is_refused() -> None:
    with pytest.raises(InvalidCommand, match=r"^received_at lies in the future\.$"):
        accept(channel="letter", received_at=(NOW + timedelta(minutes=5, seconds=1)).isoformat())


def test_an_assignment_keeps_the_acceptance_limit_that_was_met() -> None:
    """A letter accepted within its 24 hours: choosing the complexity later chooses again only
    the limits that depend on it, and the met acceptance limit stays met."""
    c = accept(channel="letter", received_at=(NOW - timedelta(hours=10)).isoformat())
    met_at = c.deadlines["acceptance"]["met_at"]
    assert met_at == NOW.isoformat()
    c.assign("network", "inv-7", Complexity.COMPLEX, POLICY, ctx())
    assert c.deadlines["acceptance"]["met_at"] == met_at
    assert c.assignment == {
        "department": "network",
        "investigator": "inv-7",
        "complexity": "complex",
        "at": NOW.isoformat(),
    }


def test_a_complexity_rule_that_starts_on_receipt_counts_from_receipt_at_assignment() -> None:
    """A policy may start a limit that depends on the complexity from when the letter reached
    us: the assignment counts it from there, not from acceptance."""
    policy = Policy.from_toml(
        DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace(
            '[[limit]]\nname = "investigation"\napplies = { complexity = ["complex"] }\n',
            '[[limit]]\nname = "investigation"\napplies = { complexity = ["complex"] }\n'
            'start = "received"\n',
            1,
        )
    )
    received = NOW - timedelta(hours=10)
    c = accept(
        policy,
        channel="letter",
        business_type="fixed_line",
        received_at=received.isoformat(),
    )
    c.assign("network", "inv-7", Complexity.COMPLEX, policy, ctx())
    assert c.deadlines["investigation"]["starts_at"] == received.isoformat()


def test_the_facts_the_policy_selects_on_include_the_assessed_complexity() -> None:
    facts = assigned(Complexity.COMPLEX).facts()
    assert (facts["complexity"], facts["level"], facts["business_type"]) == (
        "complex",
        "city",
        "mobile",
    )
    assert new_complaint().facts()["complexity"] is None


def test_findings_are_recorded_as_given() -> None:
    c = assigned()
    c.record_findings("upheld", "rule 7", "cell outage", True, ctx())
    assert c.findings == {
        "conclusion": "upheld",
        "basis": "rule 7",
        "root_cause": "cell outage",
        "upheld": True,
        "at": NOW.isoformat(),
        "by": {"id": "supervisor-1", "role": "supervisor"},
    }


def test_a_message_remembers_the_version_that_asked_for_it() -> None:
    c = replied()
    assert c.notifications["ack-1"]["requested_version"] == 1
    # accepted, assigned, findings, replied: the reply is asked for by version 4
    assert c.notifications["reply-1"] == {
        "id": "reply-1",
        "kind": "reply",
        "channel": "sms",
        "task": False,
        "requested_version": 4,
        "requested_at": NOW.isoformat(),
        "status": "pending",
        "attempts": 0,
        "last_error": None,
        "last_failed_at": None,
        "sent_at": None,
        "gateway_ref": None,
        "confirmed_by": None,
        "dates": {},
    }


def test_an_acknowledgement_given_in_the_call_is_recorded_as_given_by_the_agent() -> None:
    c = accept(reply_channel="phone")
    ack = c.notifications["ack-1"]
    assert (ack["status"], ack["channel"], ack["task"]) == ("sent", "hotline", False)
    assert ack["sent_at"] == NOW.isoformat()
    assert ack["confirmed_by"] == {"id": "agent-1", "role": "agent"}


def test_each_progress_notice_has_a_number_of_its_own() -> None:
    c = assigned()
    c.extend("vendor", NOW + timedelta(days=3), "one", POLICY, ctx())
    c.extend("vendor", NOW + timedelta(days=4), "two", POLICY, ctx(minutes=1))
    progress = sorted(n for n in c.notifications if n.startswith("progress"))
    assert progress == ["progress-1", "progress-2"]


def test_an_intake_in_another_timezone_is_stored_as_given() -> None:
    """(The limitation check compares in Beijing time whatever offset the frontend sent.)"""
    occurred = datetime(2026, 6, 23, 1, 0, tzinfo=UTC).isoformat()
    assert accept(occurred_at=occurred).time_barred is True


def test_a_pause_before_the_assignment_still_counts_for_the_limits_it_chooses_again() -> None:
    """Paused for two hours before the investigator was named: the investigation (72 hours,
    simple) and the resolution chosen again at assignment still stand two hours later; the
    reply, which is not pausable for a mobile complaint, does not move."""
    c = new_complaint()
    c.pause_clock("waiting for the customer", ctx(minutes=60))
    c.resume_clock(ctx(minutes=180))
    c.assign("network", "inv-7", Complexity.SIMPLE, POLICY, ctx(minutes=240))
    assert c.deadlines["investigation"]["due_at"] == "2026-11-26T04:00:00+00:00"
    assert c.deadlines["investigation"]["paused_seconds"] == 7200
    assert c.deadlines["resolution"]["due_at"] == "2026-11-30T17:59:59+00:00"
    assert c.deadlines["reply"]["due_at"] == "2026-11-25T15:59:59+00:00"
