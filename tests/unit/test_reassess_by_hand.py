"""Re-assessing a timeline, with every expected deadline worked out by hand from the policy and
the calendar (test_reanalysis.py compares re-analysis with the aggregate, which the same
functions built; this one does not trust them).

Monday 23 Nov 2026, 10:00 in Beijing is 02:00 UTC; a working day ends at 23:59:59 in Beijing,
15:59:59 UTC. November and December 2026 have no public holiday in China.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.codes import DeadlineState
from shared.domain.deadlines import Book, openings, reassess, state
from shared.domain.policy import Policy, facts_of

pytestmark = pytest.mark.usefixtures("server_in_beijing")

POLICY = Policy.load()


def facts(channel: str = "hotline") -> dict[str, str | None]:
    return facts_of(
        channel=channel, business_type="fixed_line", category="billing", vip_tier=None, area=None
    )


def step(event: str, at: str, status: str, level: str = "city", **details: Any) -> dict[str, Any]:
    return {"event": event, "at": at, "status": status, "level": level, **details}


def summary(kept: Book) -> dict[str, tuple[Any, ...]]:
    """due, met, closed (and by what), first due and escalation of each limit."""
    return {
        key: (
            d["due_at"],
            d["met_at"],
            d.get("closed_at"),
            d.get("closed_by"),
            d.get("original_due_at"),
            d.get("escalated_at"),
        )
        for key, d in kept.items()
    }


def z(text: str) -> str:
    """A UTC time as stored: `z("2026-11-23T02:00")`."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).isoformat()


# A letter received Saturday 21 Nov 09:00 in Beijing, accepted Monday 23 Nov 10:00, assessed as
# complex, its clock paused for two hours, extended, answered, and escalated by the customer.
LETTER = [
    step(
        "Accepted",
        z("2026-11-23T02:00"),
        "accepted",
        opening="accepted",
        received_at=z("2026-11-21T01:00"),
    ),
    step("Assigned", z("2026-11-23T03:00"), "investigating", complexity="complex"),
    step("ClockResumed", z("2026-11-24T02:00"), "investigating", seconds=7200),
    step("Extended", z("2026-11-25T02:00"), "investigating", new_due_at=z("2026-12-03T10:00")),
    step("FindingsRecorded", z("2026-12-02T02:00"), "investigating"),
    step("Replied", z("2026-12-03T04:00"), "replied", opening="replied"),
    step("Escalated", z("2026-12-04T02:00"), "escalated", "provincial", opening="escalated"),
]


def test_a_letter_assessed_complex_paused_extended_answered_and_escalated() -> None:
    kept = reassess(POLICY, facts("letter"), LETTER)
    assert summary(kept) == {
        # 24 hours from receipt (Sun 22 Nov 09:00 Beijing); accepted on Monday: met late.
        "acceptance": (z("2026-11-22T01:00"), z("2026-11-23T02:00"), None, None, None, None),
        # Complex: 5 working days from Mon 23 Nov (24, 25, 26, 27, 30 Nov) = end of Mon 30 Nov,
        # plus the 2-hour pause = 17:59:59 UTC; then extended to Thu 3 Dec 10:00 UTC.
        "investigation": (
            z("2026-12-03T10:00"),
            z("2026-12-02T02:00"),
            None,
            None,
            z("2026-11-30T17:59:59"),
            None,
        ),
        # Complex: 6 working days (… 30 Nov, 1 Dec) = end of Tue 1 Dec, + 2 h, then extended.
        "reply": (
            z("2026-12-03T10:00"),
            z("2026-12-03T04:00"),
            None,
            None,
            z("2026-12-01T17:59:59"),
            None,
        ),
        # A complex billing complaint: 6 working days as well.
        "resolution": (
            z("2026-12-03T10:00"),
            z("2026-12-03T04:00"),
            None,
            None,
            z("2026-12-01T17:59:59"),
            None,
        ),
        # 15 calendar days from Mon 23 Nov 10:00: Tue 8 Dec 10:00; not pausable, not extended.
        "operator_answer": (z("2026-12-08T02:00"), z("2026-12-03T04:00"), None, None, None, None),
        # 2 working days after Thu 3 Dec: Fri 4, Mon 7 Dec. Left when escalated: closed.
        "callback": (
            z("2026-12-07T15:59:59"),
            None,
            z("2026-12-04T02:00"),
            "Escalated",
            None,
            None,
        ),
        # 4 hours to name a handler; 3 working days at a province (Mon 7, Tue 8, Wed 9 Dec).
        "escalation_assignment": (z("2026-12-04T06:00"), None, None, None, None, None),
        "escalation_review": (z("2026-12-09T15:59:59"), None, None, None, None, None),
    }
    assert kept["callback"]["bound_to"] == "replied"
    assert kept["escalation_review"]["bound_to"] == "escalated"
    assert kept["escalation_review"]["level"] == "provincial"
    assert kept["acceptance"]["starts_at"] == z("2026-11-21T01:00")
    assert state(kept["acceptance"], datetime(2026, 12, 4, tzinfo=UTC)) is DeadlineState.MISSED
    assert state(kept["callback"], datetime(2026, 12, 9, tzinfo=UTC)) is DeadlineState.CLOSED


REGULATOR = {
    "name": "regulator_appeal",
    "opened_by": "escalated",
    "bound_to": None,
    "level": "headquarters",
    "starts_at": z("2026-11-23T03:00"),
    "due_at": z("2026-12-05T10:00"),
    "amount": None,
    "unit": "regulator",
    "met_by": ["Replied"],
    "target": 1.0,
    "pausable": False,
    "source": "regulator appeal MIIT-1",
    "policy_version": None,
}

# A phone complaint appealed to headquarters within the hour; nobody was named there in time,
# so the supervisors were alerted; a handler was named, the review sent it back, and it was
# refused after all.
APPEALED = [
    step("Accepted", z("2026-11-23T02:00"), "accepted", opening="accepted"),
    step(
        "Escalated",
        z("2026-11-23T03:00"),
        "escalated",
        "headquarters",
        opening="escalated",
        deadlines=[REGULATOR],
    ),
    step(
        "SupervisorsAlerted",
        z("2026-11-23T08:00"),
        "escalated",
        "headquarters",
        deadline="escalation_assignment",
    ),
    step("HandlerAssigned", z("2026-11-24T01:00"), "escalated", "headquarters"),
    step("Reviewed", z("2026-11-25T02:00"), "accepted", "headquarters", opening="reopened"),
    step("Refused", z("2026-11-25T03:00"), "refused", "headquarters"),
]


def test_an_appeal_alerted_at_headquarters_reviewed_and_refused() -> None:
    kept = reassess(POLICY, facts(), APPEALED)
    refused = (z("2026-11-25T03:00"), "Refused", None, None)
    assert summary(kept) == {
        "investigation": (z("2026-11-26T02:00"), None, *refused),  # 72 hours
        "reply": (z("2026-11-26T15:59:59"), None, *refused),  # Tue 24, Wed 25, Thu 26 Nov
        "resolution": (z("2026-11-30T15:59:59"), None, *refused),  # … Fri 27, Mon 30 Nov
        "operator_answer": (z("2026-12-08T02:00"), None, *refused),
        "regulator_appeal": (z("2026-12-05T10:00"), None, *refused),
        # 4 hours from Mon 11:00 Beijing: 15:00. Alerted at 16:00 Beijing: marked, and closed
        # by the limit that runs again for one working day (the end of Tue 24 Nov).
        "escalation_assignment": (
            z("2026-11-23T07:00"),
            None,
            z("2026-11-23T08:00"),
            "SupervisorsAlerted",
            None,
            z("2026-11-23T08:00"),
        ),
        "escalation_assignment.2": (
            z("2026-11-24T15:59:59"),
            z("2026-11-24T01:00"),
            None,
            None,
            None,
            None,
        ),
        # Headquarters decides within 5 working days: Tue 24 … Mon 30 Nov.
        "escalation_review": (
            z("2026-11-30T15:59:59"),
            z("2026-11-25T02:00"),
            None,
            None,
            None,
            None,
        ),
        # Sent back on Wed 25 Nov 10:00: 72 hours, and 3 working days (Thu 26, Fri 27, Mon 30).
        "reinvestigation": (z("2026-11-28T02:00"), None, *refused),
        "reply_after_review": (z("2026-11-30T15:59:59"), None, *refused),
    }
    again = kept["escalation_assignment.2"]
    assert again["follows"] == "escalation_assignment"
    assert again["met_by"] == ["HandlerAssigned", "Reviewed"]
    assert again["starts_at"] == z("2026-11-23T08:00")
    assert again["bound_to"] == "escalated" and again["level"] == "headquarters"
    later = datetime(2026, 12, 1, tzinfo=UTC)
    assert state(kept["escalation_assignment"], later) is DeadlineState.MISSED
    assert state(kept["investigation"], later) is DeadlineState.CLOSED


def test_an_alert_about_a_limit_it_does_not_know_changes_nothing() -> None:
    timeline = [
        step("Accepted", z("2026-11-23T02:00"), "accepted", opening="accepted"),
        step("SupervisorsAlerted", z("2026-11-23T08:00"), "accepted", deadline="callback"),
    ]
    kept = reassess(POLICY, facts(), timeline)
    assert sorted(kept) == ["investigation", "operator_answer", "reply", "resolution"]
    assert all(d["met_at"] is None and "closed_at" not in d for d in kept.values())


# A policy whose complex investigation counts from receipt, and longer at a province; and a
# pausable answer that does not depend on the complexity.
BY_RECEIPT = Policy.from_toml(
    """
version = "by-receipt"
[[limit]]
name = "investigation"
amount = 72
unit = "hours"
met_by = ["FindingsRecorded"]
[[limit]]
name = "investigation"
applies = { complexity = ["complex"] }
start = "received"
amount = 96
unit = "hours"
met_by = ["FindingsRecorded"]
[[limit]]
name = "investigation"
applies = { complexity = ["complex"], level = ["provincial"] }
start = "received"
amount = 120
unit = "hours"
met_by = ["FindingsRecorded"]
[[limit]]
name = "answer"
amount = 48
unit = "hours"
pausable = true
met_by = ["Replied"]
"""
)


def test_an_assignment_chooses_again_from_receipt_at_the_current_level() -> None:
    def timeline(level: str) -> list[dict[str, Any]]:
        return [
            step(
                "Accepted",
                z("2026-11-23T02:00"),
                "accepted",
                opening="accepted",
                received_at=z("2026-11-21T01:00"),
            ),
            step("ClockResumed", z("2026-11-23T05:00"), "accepted", seconds=3600),
            step("Assigned", z("2026-11-23T06:00"), "investigating", level, complexity="complex"),
        ]

    city = reassess(BY_RECEIPT, facts("letter"), timeline("city"))
    # 96 hours from Sat 21 Nov 01:00 UTC: Wed 25 Nov 01:00 UTC.
    assert city["investigation"]["due_at"] == z("2026-11-25T01:00")
    assert city["investigation"]["starts_at"] == z("2026-11-21T01:00")
    # Not chosen again: 48 hours from acceptance plus the hour the clock stood still.
    assert city["answer"]["due_at"] == z("2026-11-25T03:00")
    province = reassess(BY_RECEIPT, facts("letter"), timeline("provincial"))
    # 120 hours from receipt: Thu 26 Nov 01:00 UTC.
    assert province["investigation"]["due_at"] == z("2026-11-26T01:00")


def test_a_step_opens_the_policys_limits_and_the_ones_it_carries() -> None:
    opened = openings(
        POLICY,
        facts(),
        step(
            "Escalated",
            z("2026-11-23T03:00"),
            "escalated",
            "headquarters",
            opening="escalated",
            deadlines=[REGULATOR],
        ),
    )
    assert [(d["name"], d["due_at"]) for d in opened] == [
        ("regulator_appeal", z("2026-12-05T10:00")),
        ("escalation_assignment", z("2026-11-23T07:00")),
        ("escalation_review", z("2026-11-30T15:59:59")),  # headquarters: 5 working days
    ]
    assert openings(POLICY, facts(), step("Refused", z("2026-11-23T03:00"), "refused")) == []
    carried = step("Escalated", z("2026-11-23T03:00"), "escalated", deadlines=[REGULATOR])
    assert openings(POLICY, facts(), carried) == [REGULATOR]
    letter = openings(
        POLICY,
        facts("letter"),
        step(
            "Accepted",
            z("2026-11-23T02:00"),
            "accepted",
            opening="accepted",
            received_at=z("2026-11-21T01:00"),
        ),
    )
    assert letter[0]["name"] == "acceptance"
    assert letter[0]["due_at"] == z("2026-11-22T01:00")  # 24 hours from receipt
