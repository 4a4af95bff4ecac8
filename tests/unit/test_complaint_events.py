"""What each command writes down: the facts, who gave it and when. Written out by hand: the
history is what a regulator replays, so a fact left out or a wrong name is a wrong record."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.codes import (
    EscalationTrigger,
    Level,
    RefusalReason,
    ReviewOutcome,
    Satisfaction,
    Status,
)
from shared.domain.complaint import Complaint
from shared.domain.context import Actor, CommandContext
from shared.domain.errors import InvalidCommand
from tests.unit.test_calendar_honesty import OFFICIAL_2027, accepted_on_new_years_eve
from tests.unit.test_complaint_errors import (
    appeal,
    assigned,
    at_headquarters,
    by,
    replied,
    with_findings,
)
from tests.unit.test_transitions import COMMANDS, LEGAL, NOW, PATHS, POLICY, in_status

#: Each command once, from the first status of PATHS where it is legal (resuming a clock that
#: runs is legal nowhere: the pause test below covers it).
FIRST_LEGAL = {
    name: status
    for name in COMMANDS
    if (status := next((s for s in PATHS if name in LEGAL[s]), None)) is not None
}


@pytest.mark.parametrize("command", list(FIRST_LEGAL))
def test_every_event_records_who_gave_the_command_and_when(command: str) -> None:
    complaint = in_status(FIRST_LEGAL[command])
    COMMANDS[command](complaint)
    events = complaint.collect_events()
    assert events
    for event in events:
        ctx = getattr(event, "ctx", None)
        assert ctx is not None and ctx["actor"]["id"] in {"supervisor-1", "system-1"}
        assert ctx["service"] == "test"
        # The command's time (NOW, or the later time the command table gives), not the
        # machine's clock: a replay shows when it happened.
        assert NOW <= event.timestamp <= NOW + timedelta(days=30)


def actor(actor_id: str, role: str = "supervisor") -> dict[str, str]:
    return {"id": actor_id, "role": role}


def test_evidence_records_its_kind_reference_summary_time_and_author() -> None:
    c = assigned()
    c.add_evidence(
        "call_record", "CDR-9", "the dropped calls", by("inv-7", "investigator", hours=1)
    )
    assert c.evidence[-1] == {
        "kind": "call_record",
        "ref": "CDR-9",
        "summary": "the dropped calls",
        "at": "2026-11-23T03:00:00+00:00",
        "by": actor("inv-7", "investigator"),
    }


def test_an_extension_records_its_reason_and_the_notice() -> None:
    c = assigned()
    c.extend("vendor", NOW + timedelta(days=4), "we need until Friday", POLICY, by("s", hours=1))
    extension = c.extensions[-1]
    assert (extension["reason"], extension["progress_notice"], extension["at"]) == (
        "vendor",
        "we need until Friday",
        "2026-11-23T03:00:00+00:00",
    )


def test_a_second_extension_is_bounded_by_the_first_limit_not_the_extended_one() -> None:
    c = assigned()  # investigation first due at the end of Wed 25 Nov (Beijing)
    c.extend("vendor", NOW + timedelta(days=9), "n", POLICY, by("s"))  # to Wed 2 Dec
    with pytest.raises(InvalidCommand, match=r"2026-12-09T15:59:59\+00:00 at the latest"):
        c.extend("vendor", NOW + timedelta(days=17), "n", POLICY, by("s", hours=1))
    c.extend("vendor", NOW + timedelta(days=16), "n", POLICY, by("s", hours=1))  # 9 Dec 02:00
    assert c.deadlines["investigation"]["due_at"] == "2026-12-09T02:00:00+00:00"


def test_a_pause_records_its_reason_and_both_ends() -> None:
    c = in_status(Status.ACCEPTED)
    c.pause_clock("waiting for the customer's bill", by("s", hours=1))
    c.resume_clock(by("s", hours=3))
    assert c.pauses == [
        {
            "reason": "waiting for the customer's bill",
            "from": "2026-11-23T03:00:00+00:00",
            "to": "2026-11-23T05:00:00+00:00",
        }
    ]
    assert c.paused_at is None


def test_callbacks_record_what_the_customer_said() -> None:
    c = replied()
    c.record_unreached_callback("no answer at 10:00", by("cb-1", "callback_agent", hours=1))
    c.record_callback(
        Satisfaction.SATISFIED, True, "all good", POLICY, by("cb-1", "callback_agent", hours=2)
    )
    assert c.callback_attempts == [
        {
            "comments": "no answer at 10:00",
            "at": "2026-11-23T03:00:00+00:00",
            "by": actor("cb-1", "callback_agent"),
        }
    ]
    assert c.callbacks[-1]["comments"] == "all good"
    c.archive("closed after a satisfied callback", by("s", hours=3))
    assert c.archive_summary == "closed after a satisfied callback"


def test_a_dissatisfied_customer_at_headquarters_goes_back_to_headquarters_with_the_reason() -> (
    None
):
    c = at_headquarters()
    c.assign_handler("hq-2", by("hq-sup"))
    c.review(ReviewOutcome.REVISED, "start again", POLICY, by("hq-2", hours=1))
    c.record_findings("c", "b", "r", False, by("hq-2", hours=2))
    c.reply("sms", "c", "b", "p", "e", POLICY, by("hq-2", hours=3))
    c.record_callback(Satisfaction.DISSATISFIED, True, "no", POLICY, by("cb", hours=4))
    assert (c.status, c.level) == ("escalated", "headquarters")
    assert c.escalations[-1]["reason"] == (
        "Callback: the customer is dissatisfied or the problem is unresolved."
    )
    assert (c.escalations[-1]["from_level"], c.escalations[-1]["to_level"]) == (
        "headquarters",
        "headquarters",
    )


def test_a_review_records_its_notes_and_whether_the_findings_were_kept() -> None:
    c = with_findings(False)
    c.reply("sms", "c", "b", "p", "e", POLICY, by("s"))
    c.escalate(EscalationTrigger.MAJOR_INCIDENT, "r", Level.PROVINCIAL, POLICY, by("s"))
    c.review(ReviewOutcome.UPHELD, "the reply stands", POLICY, by("prov-1", hours=1))
    assert c.reviews[-1]["notes"] == "the reply stands"
    assert c.timeline[-1]["event"] == "Reviewed"


def test_an_upheld_appeal_without_a_plan_goes_back_to_investigation() -> None:
    """Replied without a resolution (not upheld), then appealed to the regulator: the review
    upholds it, yet the regulator must be answered by a new reply, so the complaint goes back
    to handling: to investigation, as there is no plan to carry out."""
    c = replied()
    appeal(c, by("s"), NOW + timedelta(days=10))
    c.review(ReviewOutcome.UPHELD, "answer the regulator", POLICY, by("hq", hours=1))
    assert c.status == "investigating"


def test_an_appeal_limit_is_the_regulators_date_and_nothing_else() -> None:
    c = replied()
    appeal(c, by("s", hours=1), NOW + timedelta(days=10))
    assert c.deadlines["regulator_appeal"] == {
        "key": "regulator_appeal",
        "name": "regulator_appeal",
        "opened_by": "escalated",
        "bound_to": None,
        "level": "headquarters",
        "starts_at": "2026-11-23T03:00:00+00:00",
        "due_at": "2026-12-03T02:00:00+00:00",
        "amount": None,
        "unit": "regulator",
        "met_by": ["Replied"],
        "met_at": None,
        "target": 1.0,
        "pausable": False,
        "source": "regulator appeal MIIT-7",
        "policy_version": None,
    }
    assert c.escalations[-1]["from_level"] == "city"


def test_an_appeal_due_now_is_already_late() -> None:
    c = replied()
    with pytest.raises(InvalidCommand, match="due_at of the appeal must lie in the future"):
        appeal(c, by("s", hours=1), NOW + timedelta(hours=1))


def test_a_missed_limit_escalates_with_the_reason_and_the_next_levels_limits() -> None:
    c = new_accepted()
    c.escalate_missed("reply", POLICY, by("system", "system", hours=24 * 3))
    escalation = c.escalations[-1]
    assert {k: escalation[k] for k in ("trigger", "reason", "from_level", "to_level")} == {
        "trigger": "deadline_missed",
        "reason": "The reply limit passed at 2026-11-25T15:59:59+00:00 without being met.",
        "from_level": "city",
        "to_level": "provincial",
    }
    opened = [d for d in c.deadlines.values() if d["opened_by"] == "escalated"]
    assert opened and {d["level"] for d in opened} == {"provincial"}


def test_a_missed_limit_at_headquarters_alerts_with_the_reason() -> None:
    c = at_headquarters()
    due = c.deadlines["escalation_assignment"]["due_at"]
    c.escalate_missed("escalation_assignment", POLICY, by("system", "system", hours=24))
    assert c.alerts == [
        {
            "deadline": "escalation_assignment",
            "reason": f"The escalation_assignment limit passed at {due} without being met.",
            "at": "2026-11-24T02:00:00+00:00",
        }
    ]


def new_accepted() -> Complaint:
    return in_status(Status.ACCEPTED)


def test_a_handler_is_recorded_with_the_level_and_can_be_replaced() -> None:
    c = at_headquarters()
    c.assign_handler("hq-2", by("hq-sup"))
    c.assign_handler("hq-3", by("hq-sup", hours=1))
    assert [(h["handler"], h["level"]) for h in c.handlers] == [
        ("hq-2", "headquarters"),
        ("hq-3", "headquarters"),
    ]
    assert (c.owner, c.owner_is_group) == ("hq-3", False)


def test_a_major_incident_names_its_size_category_and_area() -> None:
    c = in_status(Status.ACCEPTED)
    c.intake["area"] = "urban"
    done = c.join_incident("inc-9", 23, POLICY, by("system", "system"))
    assert done == {"done": "escalated", "from_level": "city", "to_level": "provincial"}
    assert c.escalations[-1]["reason"] == (
        "Major incident inc-9 (群体性投诉): 23 billing complaints from urban."
    )


def test_a_refusal_for_another_reason_names_no_earlier_complaint() -> None:
    c = in_status(Status.ACCEPTED)
    c.refuse(RefusalReason.OUT_OF_SCOPE, "not ours", "the bank", by("s"), earlier=replied())
    assert c.refusal is not None and c.refusal["repeats"] is None


def test_a_resolution_records_the_plan() -> None:
    c = with_findings()
    c.propose_resolution(
        ["replace the cell board"],
        [{"type": "refund", "amount": "20.00"}],
        "eng-4",
        NOW + timedelta(days=3),
        by("inv-7", "investigator", hours=1),
    )
    assert c.resolution == {
        "measures": ["replace the cell board"],
        "remedies": [{"type": "refund", "amount": "20.00"}],
        "owner": "eng-4",
        "due_at": "2026-11-26T02:00:00+00:00",
        "at": "2026-11-23T03:00:00+00:00",
    }


def test_a_resolution_due_this_instant_is_already_late() -> None:
    c = with_findings()
    with pytest.raises(InvalidCommand, match="due_at of the resolution must lie in the future"):
        c.propose_resolution(["fix"], [], "eng-4", NOW + timedelta(hours=1), by("s", hours=1))


def test_a_reply_records_what_the_customer_was_told() -> None:
    c = with_findings(False)
    c.reply("sms", "not upheld", "tariff §3", "none", "explained", POLICY, by("inv-7", hours=1))
    assert c.reply_sent == {
        "channel": "sms",
        "conclusion": "not upheld",
        "basis": "tariff §3",
        "plan": "none",
        "execution": "explained",
        "at": "2026-11-23T03:00:00+00:00",
        "by": actor("inv-7"),
    }


def test_an_escalation_hands_over_everything_recorded_so_far() -> None:
    c = with_findings(False)
    c.add_evidence("call_record", "CDR-1", "s", by("s"))
    c.reply("sms", "c", "b", "p", "e", POLICY, by("s"))
    c.record_callback(Satisfaction.DISSATISFIED, False, "still broken", POLICY, by("cb", hours=1))
    (escalated,) = [e for e in c.collect_events() if type(e).__name__ == "Escalated"]
    assert escalated.handover == {
        "status": "callback_done",
        "level": "city",
        "owner": "inv-7",
        "evidence_count": 1,
        "findings": c.findings,
        "resolution": None,
        "reply": c.reply_sent,
        "last_callback": {
            "satisfaction": "dissatisfied",
            "resolved": False,
            "comments": "still broken",
            "at": "2026-11-23T03:00:00+00:00",
            "by": actor("cb"),
        },
        "escalations": 0,
    }


def test_the_gateways_answers_are_recorded_on_the_message() -> None:
    c = in_status(Status.ACCEPTED)
    c.record_notification("ack-1", sent=False, detail="timeout", ctx=by("system", hours=1))
    failed = c.notifications["ack-1"]
    assert (failed["status"], failed["attempts"], failed["last_error"]) == (
        "pending",
        1,
        "timeout",
    )
    assert failed["last_failed_at"] == "2026-11-23T03:00:00+00:00"
    c.record_notification("ack-1", sent=True, detail="gw-77", ctx=by("system", hours=2))
    sent = c.notifications["ack-1"]
    assert (sent["status"], sent["gateway_ref"], sent["sent_at"]) == (
        "sent",
        "gw-77",
        "2026-11-23T04:00:00+00:00",
    )


def test_the_commands_outside_the_table_record_who_and_when_too() -> None:
    """Erasure, the calendar's recalculation, an incident's link, a resumed clock, a failed
    message, a resolution, an alert at headquarters and a review that keeps the findings."""

    def check(complaint: Complaint, when: CommandContext) -> None:
        events = complaint.collect_events()
        assert events
        for event in events:
            assert event.ctx == when.record()
            assert event.timestamp == when.at

    c = in_status(Status.ACCEPTED)
    c.erase_personal_data(when := by("dpo", hours=1))
    check(c, when)
    c.join_incident("inc-1", 20, POLICY, when := by("system", "system", hours=2))
    check(c, when)
    c.pause_clock("waiting", by("s", hours=3))
    c.collect_events()
    c.resume_clock(when := by("s", hours=4))
    check(c, when)
    c.record_notification("ack-1", sent=False, detail="down", ctx=(when := by("gw", hours=5)))
    check(c, when)

    late = accepted_on_new_years_eve()
    late.collect_events()
    when = CommandContext(Actor("system", "system"), "test", late.accepted_at, None)
    late.recalculate_deadlines(OFFICIAL_2027, when)
    check(late, when)

    f = with_findings()
    f.collect_events()
    f.propose_resolution(["fix"], [], "eng", NOW + timedelta(days=2), when := by("s", hours=1))
    check(f, when)
    f.escalate(EscalationTrigger.MAJOR_INCIDENT, "r", Level.PROVINCIAL, POLICY, by("s"))
    f.collect_events()
    f.review(ReviewOutcome.UPHELD, "kept", POLICY, when := by("prov", hours=2))
    check(f, when)
    assert f.timeline[-1]["findings_kept"] is True

    hq = at_headquarters()
    hq.collect_events()
    hq.escalate_missed("escalation_assignment", POLICY, when := by("system", "system", hours=24))
    check(hq, when)


def test_an_acknowledgement_sent_through_the_gateway_names_no_agent() -> None:
    ack = in_status(Status.ACCEPTED).notifications["ack-1"]
    assert (ack["status"], ack["sent_at"], ack["confirmed_by"]) == ("pending", None, None)


def test_a_missed_limit_hands_over_what_the_lower_level_recorded() -> None:
    c = with_findings(False)
    c.escalate_missed("reply", POLICY, by("system", "system", hours=24 * 3))
    (escalated,) = [e for e in c.collect_events() if type(e).__name__ == "Escalated"]
    assert escalated.handover["findings"] == c.findings
    assert escalated.handover["owner"] == "inv-7"
