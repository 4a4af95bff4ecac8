"""Refusals that hold up (不予受理): each reason needs the facts that justify it."""

from __future__ import annotations

import pytest

from shared.domain.codes import Complexity, EscalationTrigger, Level, RefusalReason, Status
from shared.domain.errors import InvalidCommand, NotPermitted
from tests.unit.test_complaint_errors import appeal
from tests.unit.test_lifecycle_invariant import as_
from tests.unit.test_next_limits import at, replied
from tests.unit.test_transitions import POLICY, new_complaint

BARRED = RefusalReason.TIME_BARRED
REPEAT = RefusalReason.REPEAT_WITH_CONCLUSION


def test_time_barred_needs_the_limitation_flag() -> None:
    recent = new_complaint()  # occurred 20 Nov 2026, three days before
    assert recent.time_barred is False
    with pytest.raises(InvalidCommand, match="override_reason"):
        recent.refuse(BARRED, "late", "elsewhere", as_("agent", at(1)))
    assert recent.status == Status.ACCEPTED and recent.collect_events()[1:] == []
    old = new_complaint(occurred_at="2024-01-01T00:00:00+00:00")
    assert old.time_barred is True
    old.refuse(BARRED, "late", "elsewhere", as_("agent", at(1)))
    assert old.status == Status.REFUSED and old.refusal is not None
    assert old.refusal["override_reason"] is None


def test_only_a_supervisor_overrides_the_limitation_check() -> None:
    c = new_complaint()
    with pytest.raises(NotPermitted, match="supervisor"):
        c.refuse(BARRED, "late", "elsewhere", as_("agent", at(1)), override="wrong date")
    c.refuse(BARRED, "late", "elsewhere", as_("supervisor", at(1)), override="wrong date")
    assert c.refusal is not None and c.refusal["override_reason"] == "wrong date"


def test_a_repeat_needs_an_earlier_complaint_that_was_answered() -> None:
    c = new_complaint()
    with pytest.raises(InvalidCommand, match="repeats none"):
        c.refuse(REPEAT, "same", "elsewhere", as_("agent", at(1)))
    pending = new_complaint()
    pending.assign("net", "inv-7", Complexity.SIMPLE, POLICY, as_("supervisor", at(0.5)))
    with pytest.raises(InvalidCommand, match="is investigating"):
        c.refuse(REPEAT, "same", "elsewhere", as_("agent", at(1)), earlier=pending)
    answered = replied()
    c.refuse(REPEAT, "same", "elsewhere", as_("agent", at(2)), earlier=answered)
    assert c.refusal is not None
    assert c.refusal["repeats"] == {"id": str(answered.id), "status": "replied"}


def test_an_answered_complaint_stays_concluded_when_it_goes_up() -> None:
    earlier = replied()
    earlier.escalate(
        EscalationTrigger.CUSTOMER_DISSATISFIED, "r", Level.PROVINCIAL, POLICY, as_("agent", at(3))
    )
    assert earlier.status == Status.ESCALATED and earlier.concluded
    assert not new_complaint().concluded


def test_out_of_scope_is_refused_with_its_explanation() -> None:
    c = new_complaint()
    c.refuse(RefusalReason.OUT_OF_SCOPE, "third party", "call the app", as_("agent", at(1)))
    assert c.refusal is not None
    assert (c.refusal["reason"], c.refusal["explanation"], c.refusal["redirect"]) == (
        "out_of_scope",
        "third party",
        "call the app",
    )


def test_a_refusal_stands_when_archived_and_not_when_an_appeal_reopens_it() -> None:
    c = new_complaint()
    c.refuse(RefusalReason.OUT_OF_SCOPE, "third party", "call the app", as_("agent", at(1)))
    c.archive("refused, filed", as_("callback", at(2)))
    assert c.refused_for == "out_of_scope"  # reports count it with the refused
    appealed = new_complaint()
    appealed.refuse(RefusalReason.OUT_OF_SCOPE, "third party", "app", as_("agent", at(1)))
    appeal(appealed, as_("agent", at(2)), at(24 * 10), ref="MIIT-7")
    assert appealed.refused_for is None  # handled again: it counts like any other
    assert new_complaint().refused_for is None
