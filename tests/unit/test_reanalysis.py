"""Re-assessing a complaint's time limits from its timeline: under the policy that applied it
gives exactly the deadlines the aggregate kept; under another policy, that policy's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.codes import (
    Complexity,
    EscalationTrigger,
    Level,
    RefusalReason,
    ReviewOutcome,
    Satisfaction,
)
from shared.domain.complaint import Complaint
from shared.domain.deadlines import reassess
from shared.domain.policy import Policy, facts_of_intake
from tests.unit.test_transitions import NOW, PATHS, POLICY, ctx, in_status, new_complaint

HOUR = 60


def _assign(complexity: Complexity, at: int) -> Callable[[Complaint], None]:
    return lambda c: c.assign("network", "inv-7", complexity, POLICY, ctx(minutes=at))


def _findings(at: int) -> Callable[[Complaint], None]:
    return lambda c: c.record_findings("c", "rule", "cause", False, ctx(minutes=at))


def _reply(at: int) -> Callable[[Complaint], None]:
    return lambda c: c.reply("sms", "c", "b", "p", "done", POLICY, ctx(minutes=at))


#: Lifecycles with time passing between the steps (minutes after acceptance).
LIFECYCLES: dict[str, list[Callable[[Complaint], None]]] = {
    "complex, paused, extended, answered late": [
        _assign(Complexity.COMPLEX, 60),
        lambda c: c.pause_clock("waiting for the customer", ctx(minutes=2 * HOUR)),
        lambda c: c.resume_clock(ctx(minutes=50 * HOUR)),
        lambda c: c.extend(
            "vendor test", NOW + timedelta(days=14), "notice", POLICY, ctx(minutes=70 * HOUR)
        ),
        _findings(200 * HOUR),
        _reply(210 * HOUR),
        lambda c: c.record_callback(
            Satisfaction.SATISFIED, True, "ok", POLICY, ctx(minutes=211 * HOUR)
        ),
        lambda c: c.archive("done", ctx(minutes=212 * HOUR)),
    ],
    "paused before the assignment": [
        lambda c: c.pause_clock("waiting", ctx(minutes=10)),
        _assign(Complexity.SIMPLE, 3 * HOUR),
        lambda c: c.resume_clock(ctx(minutes=30 * HOUR)),
        _findings(90 * HOUR),
        _reply(100 * HOUR),
    ],
    "refused, then appealed to the regulator": [
        lambda c: c.refuse(RefusalReason.OUT_OF_SCOPE, "why", "where", ctx(minutes=30)),
        lambda c: c.escalate(
            EscalationTrigger.REGULATOR_APPEAL,
            "appeal",
            Level.HEADQUARTERS,
            POLICY,
            ctx(minutes=10 * HOUR),
            regulator_ref="MIIT-9",
            regulator_due_at=NOW + timedelta(days=3),
        ),
        lambda c: c.review(ReviewOutcome.UPHELD, "stands", POLICY, ctx(minutes=20 * HOUR)),
    ],
    "missed, escalated, reassigned, revised and answered again": [
        lambda c: c.escalate_missed("investigation", POLICY, ctx(minutes=80 * HOUR)),
        lambda c: c.review(ReviewOutcome.UPHELD, "stands", POLICY, ctx(minutes=81 * HOUR)),
        _assign(Complexity.SIMPLE, 82 * HOUR),
        _findings(83 * HOUR),
        _reply(84 * HOUR),
        lambda c: c.record_callback(
            Satisfaction.DISSATISFIED, False, "no", POLICY, ctx(minutes=90 * HOUR)
        ),
        lambda c: c.review(ReviewOutcome.REVISED, "again", POLICY, ctx(minutes=91 * HOUR)),
        _findings(92 * HOUR),
        _reply(93 * HOUR),
    ],
}


def _due_and_met(
    deadlines: dict[str, dict[str, object]],
) -> dict[str, tuple[object, object, object]]:
    return {name: (d["due_at"], d["met_at"], d.get("closed_at")) for name, d in deadlines.items()}


def _timed(steps: list[Callable[[Complaint], None]]) -> Complaint:
    complaint = new_complaint()
    for step in steps:
        step(complaint)
    return complaint


@pytest.mark.parametrize("name", LIFECYCLES)
def test_the_policy_that_applied_gives_the_deadlines_the_complaint_kept(name: str) -> None:
    complaint = _timed(LIFECYCLES[name])
    again = reassess(POLICY, facts_of_intake(complaint.intake), complaint.timeline)
    assert _due_and_met(again) == _due_and_met(complaint.deadlines)


@pytest.mark.parametrize("status", PATHS)
def test_every_status_reassesses_to_the_same_deadlines(status: str) -> None:
    complaint = in_status(status)  # type: ignore[arg-type]
    again = reassess(POLICY, facts_of_intake(complaint.intake), complaint.timeline)
    assert _due_and_met(again) == _due_and_met(complaint.deadlines)


STRICT = Policy.from_toml(
    """
version = "strict"
[[limit]]
name = "reply"
amount = 1
unit = "working_days"
met_by = ["Replied"]
pausable = true

[[limit]]
name = "callback"
amount = 4
unit = "hours"
met_by = ["CallbackRecorded"]
"""
)


def test_another_policy_sets_its_own_limits_on_the_same_timeline() -> None:
    # Accepted Mon 23 Nov 2026 10:00 Beijing time; paused two hours; replied the next day.
    complaint = _timed(
        [
            _assign(Complexity.SIMPLE, 60),
            lambda c: c.pause_clock("waiting", ctx(minutes=2 * HOUR)),
            lambda c: c.resume_clock(ctx(minutes=4 * HOUR)),
            _findings(20 * HOUR),
            _reply(30 * HOUR),
            lambda c: c.record_callback(
                Satisfaction.SATISFIED, True, "ok", POLICY, ctx(minutes=35 * HOUR)
            ),
        ]
    )
    again = reassess(STRICT, facts_of_intake(complaint.intake), complaint.timeline)
    assert sorted(again) == ["callback", "reply"]  # the strict policy's limits only
    # One working day: the end of Tue 24 Nov in Beijing, plus the two paused hours.
    assert again["reply"]["due_at"] == datetime(2026, 11, 24, 17, 59, 59, tzinfo=UTC).isoformat()
    assert again["reply"]["met_at"] == (NOW + timedelta(hours=30)).isoformat()
    # Four hours from acceptance, not paused: the callback 35 hours on is late.
    assert again["callback"]["due_at"] == (NOW + timedelta(hours=4)).isoformat()
    assert again["callback"]["met_at"] == (NOW + timedelta(hours=35)).isoformat()
