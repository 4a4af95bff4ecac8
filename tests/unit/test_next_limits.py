"""What must happen next, and by when: the limits that open after the first handling, and the
one named owner. Every expected time is worked out by hand from the default policy.

NOW is Monday 23 Nov 2026, 10:00 in Beijing (02:00 UTC); a working day ends at 23:59:59
Beijing time (15:59:59 UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.codes import (
    Complexity,
    EscalationTrigger,
    Level,
    RefusalReason,
    ReviewOutcome,
    Satisfaction,
    Status,
)
from shared.domain.complaint import Complaint
from shared.domain.errors import InvalidCommand, InvalidTransition, NotOwner
from tests.unit.test_complaint_errors import appeal
from tests.unit.test_lifecycle_invariant import as_
from tests.unit.test_transitions import NOW, POLICY, new_complaint


def utc(text: str) -> str:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).isoformat()


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


def replied(hours: float = 1) -> Complaint:
    """Assigned to inv-7, findings not upheld, replied `hours` after acceptance."""
    c = new_complaint()
    c.assign("net", "inv-7", Complexity.SIMPLE, POLICY, as_("supervisor", at(0.1)))
    c.record_findings("c", "b", "r", False, as_("investigator", at(0.2), "inv-7"))
    c.reply("sms", "c", "b", "p", "e", POLICY, as_("investigator", at(hours), "inv-7"))
    return c


def states(c: Complaint, now: datetime) -> dict[str, str]:
    return {d["key"]: d["state"] for d in c.deadline_states(now)}


def test_a_reply_starts_the_callback_and_a_content_callback_the_archive() -> None:
    c = replied()
    callback = c.deadlines["callback"]
    # Two working days from Monday: the end of Wednesday 25 Nov.
    assert callback["due_at"] == utc("2026-11-25T15:59:59")
    assert callback["opened_by"] == "replied" and callback["policy_version"] == "2026.2"
    assert callback["source"].startswith("policy choice")
    c.record_callback(Satisfaction.SATISFIED, True, "ok", POLICY, as_("callback", at(30)))
    assert c.deadlines["callback"]["met_at"] == at(30).isoformat()
    # Five working days after Tuesday 24 Nov (Wed, Thu, Fri, Mon, Tue): Tuesday 1 Dec.
    assert c.deadlines["archive"]["due_at"] == utc("2026-12-01T15:59:59")
    c.archive("done", as_("callback", at(40)))
    assert states(c, at(40))["archive"] == "met"


def test_a_dissatisfied_callback_opens_no_archive_but_the_level_above() -> None:
    c = replied()
    c.record_callback(Satisfaction.DISSATISFIED, False, "no", POLICY, as_("callback", at(2)))
    assert "archive" not in c.deadlines
    assert c.status == Status.ESCALATED and c.level == Level.PROVINCIAL
    # Four hours to name a handler; three working days to decide (Thu 26 Nov).
    assert c.deadlines["escalation_assignment"]["due_at"] == at(6).isoformat()
    assert c.deadlines["escalation_review"]["due_at"] == utc("2026-11-26T15:59:59")
    assert c.deadlines["escalation_review"]["level"] == "provincial"


def test_headquarters_reviews_within_five_working_days() -> None:
    c = new_complaint()
    c.escalate(
        EscalationTrigger.MAJOR_INCIDENT, "burst", Level.HEADQUARTERS, POLICY, as_("agent", NOW)
    )
    assert c.deadlines["escalation_review"]["due_at"] == utc("2026-11-30T15:59:59")


def test_a_named_handler_meets_the_wait_and_owns_the_complaint() -> None:
    c = replied()
    c.escalate(
        EscalationTrigger.CUSTOMER_DISSATISFIED, "r", Level.PROVINCIAL, POLICY, as_("agent", at(2))
    )
    assert c.owner == "provincial-supervisors" and c.owner_is_group
    c.assign_handler("prov-9", as_("supervisor", at(3)))
    assert c.owner == "prov-9" and not c.owner_is_group
    assert states(c, at(3))["escalation_assignment"] == "met"
    assert states(c, at(3))["escalation_review"] == "running"
    assert c.first_contact_owner == "agent-1"  # 首问 stays on record
    with pytest.raises(InvalidCommand):
        c.assign_handler("prov-9", as_("supervisor", at(4)))  # already them


def test_leaving_the_replied_step_closes_its_callback_and_coming_back_opens_another() -> None:
    c = replied()
    c.escalate(
        EscalationTrigger.CUSTOMER_DISSATISFIED, "r", Level.PROVINCIAL, POLICY, as_("agent", at(2))
    )
    callback = c.deadlines["callback"]
    assert callback["closed_at"] == at(2).isoformat() and callback["closed_by"] == "Escalated"
    assert states(c, at(2))["callback"] == "closed"  # not met: nobody called back
    c.review(ReviewOutcome.UPHELD, "the reply stands", POLICY, as_("supervisor", at(26)))
    assert c.status == Status.REPLIED
    # The second callback limit, two working days from Tuesday 24 Nov 12:00: Thursday 26 Nov.
    assert c.deadlines["callback.2"]["due_at"] == utc("2026-11-26T15:59:59")
    assert states(c, at(26))["callback.2"] == "running"
    assert states(c, at(26))["escalation_review"] == "met"


def test_a_revised_review_opens_a_new_investigation_and_reply() -> None:
    c = replied()
    c.escalate(
        EscalationTrigger.CUSTOMER_DISSATISFIED, "r", Level.PROVINCIAL, POLICY, as_("agent", at(2))
    )
    c.review(ReviewOutcome.REVISED, "look again", POLICY, as_("supervisor", at(3)))
    assert c.status == Status.INVESTIGATING
    assert c.deadlines["reinvestigation"]["due_at"] == at(3 + 72).isoformat()
    assert c.deadlines["reply_after_review"]["due_at"] == utc("2026-11-26T15:59:59")
    assert c.owner == "supervisor-1"  # the reviewer, as nobody had been named


def test_a_limit_that_passes_at_headquarters_alerts_and_runs_again() -> None:
    c = new_complaint()
    c.escalate(
        EscalationTrigger.MAJOR_INCIDENT, "burst", Level.HEADQUARTERS, POLICY, as_("agent", NOW)
    )
    c.escalate_missed("escalation_assignment", POLICY, as_("system", at(5)))
    assert c.level == Level.HEADQUARTERS and c.status == Status.ESCALATED
    assert [a["deadline"] for a in c.alerts] == ["escalation_assignment"]
    again = c.deadlines["escalation_assignment.2"]
    # One working day from Monday 15:00: the end of Tuesday 24 Nov.
    assert again["due_at"] == utc("2026-11-24T15:59:59")
    assert again["follows"] == "escalation_assignment"
    assert states(c, at(5))["escalation_assignment"] == "missed"
    assert states(c, at(5))["escalation_assignment.2"] == "running"


def test_refusal_closes_the_limits_without_meeting_them() -> None:
    c = new_complaint()
    c.refuse(RefusalReason.OUT_OF_SCOPE, "why", "where", as_("agent", at(1)))
    assert set(states(c, at(1)).values()) == {"closed"}
    assert c.running_limits(at(1)) == []


def test_only_the_owner_or_a_supervisor_handles_the_complaint() -> None:
    c = new_complaint()
    c.assign("net", "inv-7", Complexity.SIMPLE, POLICY, as_("supervisor", at(0.1)))
    with pytest.raises(NotOwner, match="inv-7") as refused:
        c.add_evidence("call_record", "CDR", "s", as_("investigator", at(1), "inv-8"))
    assert refused.value.owner == "inv-7"
    c.add_evidence("call_record", "CDR", "s", as_("investigator", at(1), "inv-7"))
    c.add_evidence("call_record", "CDR", "s", as_("supervisor", at(1), "sup-2"))
    c.add_evidence("call_record", "CDR", "s", as_("admin", at(1), "root"))
    for command in (
        lambda who: c.record_findings("c", "b", "r", False, who),
        lambda who: c.pause_clock("waiting", who),
    ):
        with pytest.raises(NotOwner):
            command(as_("investigator", at(2), "inv-8"))
    c.escalate(
        EscalationTrigger.CUSTOMER_DISSATISFIED, "r", Level.PROVINCIAL, POLICY, as_("agent", at(3))
    )
    with pytest.raises(NotOwner, match="provincial-supervisors"):  # the group holds it
        c.add_evidence("call_record", "CDR", "s", as_("investigator", at(4), "inv-7"))
    c.assign_handler("prov-inv-2", as_("supervisor", at(4)))
    c.add_evidence("call_record", "CDR", "s", as_("investigator", at(5), "prov-inv-2"))
    assert len(c.evidence) == 4


def test_the_extension_goes_through_the_owner_too() -> None:
    c = new_complaint()
    c.assign("net", "inv-7", Complexity.COMPLEX, POLICY, as_("supervisor", at(0.1)))
    with pytest.raises(NotOwner):
        c.extend("vendor", at(24 * 8), "notice", POLICY, as_("investigator", at(1), "inv-8"))
    c.extend("vendor", at(24 * 8), "notice", POLICY, as_("investigator", at(1), "inv-7"))


def fixed_line_complex() -> Complaint:
    """A fixed-line billing complaint, assessed as complex by its assignment to inv-7."""
    c = new_complaint(business_type="fixed_line")
    c.assign("net", "inv-7", Complexity.COMPLEX, POLICY, as_("supervisor", at(0.1)))
    return c


def test_a_complex_assessment_gives_the_reply_time_after_the_investigation() -> None:
    c = fixed_line_complex()
    assert c.deadlines["investigation"]["due_at"] == utc("2026-11-30T15:59:59")  # 5 working days
    assert c.deadlines["reply"]["due_at"] == utc("2026-12-01T15:59:59")  # 6
    assert c.deadlines["resolution"]["due_at"] == utc("2026-12-01T15:59:59")  # 6


def test_an_extension_moves_every_limit_the_customer_was_promised() -> None:
    c = fixed_line_complex()
    new_due = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)  # Thursday 3 Dec, 18:00 in Beijing
    c.extend("vendor test", new_due, "预计 12 月 3 日前答复", POLICY, as_("supervisor", at(1)))
    for name, first in (
        ("investigation", "2026-11-30T15:59:59"),
        ("reply", "2026-12-01T15:59:59"),
        ("resolution", "2026-12-01T15:59:59"),
    ):
        assert c.deadlines[name]["due_at"] == new_due.isoformat(), name
        assert c.deadlines[name]["original_due_at"] == utc(first), name
    # The operator's 15 days end later anyway, and are not the extension's.
    assert c.deadlines["operator_answer"]["due_at"] == utc("2026-12-08T02:00:00")
    assert "original_due_at" not in c.deadlines["operator_answer"]
    assert c.extensions[0]["moved"] == ["investigation", "reply", "resolution"]
    # A later re-assignment does not take the promised date back.
    c.assign("net", "inv-8", Complexity.COMPLEX, POLICY, as_("supervisor", at(2)))
    assert c.deadlines["reply"]["due_at"] == new_due.isoformat()
    assert c.deadlines["reply"]["original_due_at"] == utc("2026-12-01T15:59:59")


def test_an_extension_ends_within_the_policys_maximum() -> None:
    c = fixed_line_complex()
    # 10 working days after Monday 30 Nov: Monday 14 Dec, 23:59:59 in Beijing.
    with pytest.raises(InvalidCommand, match="2026-12-14T15:59:59"):
        c.extend("r", datetime(2026, 12, 14, 16, tzinfo=UTC), "n", POLICY, as_("supervisor", at(1)))
    c.extend("r", datetime(2026, 12, 14, 15, tzinfo=UTC), "n", POLICY, as_("supervisor", at(1)))
    assert c.deadlines["investigation"]["due_at"] == utc("2026-12-14T15:00:00")


def test_a_reopened_investigation_can_be_extended_too() -> None:
    c = fixed_line_complex()
    c.record_findings("c", "b", "r", False, as_("investigator", at(1), "inv-7"))
    c.escalate(
        EscalationTrigger.CUSTOMER_DISSATISFIED, "r", Level.PROVINCIAL, POLICY, as_("agent", at(2))
    )
    c.review(ReviewOutcome.REVISED, "look again", POLICY, as_("supervisor", at(3)))
    # Sent back at 13:00 Beijing: investigate again within 72 hours (Thu 26 Nov 05:00 UTC),
    # reply within 3 working days (the end of Thu 26 Nov).
    new_due = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    c.extend("vendor", new_due, "notice", POLICY, as_("supervisor", at(4)))
    assert c.extensions[-1]["deadline"] == "reinvestigation"
    for key, first in (
        ("reinvestigation", "2026-11-26T05:00:00"),
        ("reply_after_review", "2026-11-26T15:59:59"),
    ):
        assert c.deadlines[key]["due_at"] == new_due.isoformat(), key
        assert c.deadlines[key]["original_due_at"] == utc(first), key


def test_a_second_appeal_runs_beside_the_first_and_the_same_one_is_not_taken_twice() -> None:
    c = new_complaint()
    appeal(c, as_("agent", at(1)), at(24 * 5), ref="MIIT-1")
    appeal(c, as_("agent", at(2)), at(24 * 9), ref="MIIT-2", reason="another")
    assert states(c, at(2))["regulator_appeal"] == "running"  # the first still runs
    assert c.deadlines["regulator_appeal.2"]["due_at"] == at(24 * 9).isoformat()
    with pytest.raises(InvalidCommand, match="MIIT-2"):
        appeal(c, as_("agent", at(3)), at(24 * 9), ref="MIIT-2", reason="again")


def test_at_the_top_an_escalation_without_an_appeal_does_not_start_the_limits_again() -> None:
    c = new_complaint()
    c.escalate(
        EscalationTrigger.MAJOR_INCIDENT, "burst", Level.HEADQUARTERS, POLICY, as_("agent", NOW)
    )
    with pytest.raises(InvalidTransition, match="already at level 'headquarters'"):
        c.escalate(
            EscalationTrigger.REGULATOR_APPEAL,
            "by hand, no reference",
            Level.HEADQUARTERS,
            POLICY,
            as_("agent", at(1)),
        )
    assert "escalation_review.2" not in c.deadlines


def test_an_upheld_review_of_findings_opens_no_new_investigation() -> None:
    c = fixed_line_complex()
    c.record_findings("c", "b", "r", True, as_("investigator", at(1), "inv-7"))
    c.propose_resolution(["fix"], [], "eng-1", at(48), as_("investigator", at(2), "inv-7"))
    c.escalate(
        EscalationTrigger.CUSTOMER_DISSATISFIED, "r", Level.PROVINCIAL, POLICY, as_("agent", at(3))
    )
    c.review(ReviewOutcome.UPHELD, "the plan stands", POLICY, as_("supervisor", at(4)))
    assert c.status == Status.RESOLUTION_PROPOSED
    assert "reinvestigation" not in c.deadlines  # no findings will come to meet it
    assert states(c, at(4))["reply_after_review"] == "running"
