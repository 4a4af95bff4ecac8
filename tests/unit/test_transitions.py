"""Every command in every status: legal where the lifecycle allows it, InvalidTransition (and no
event) everywhere else."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import uuid4

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
from shared.domain.context import Actor, CommandContext
from shared.domain.errors import InvalidCommand, InvalidTransition
from shared.domain.policy import Policy

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
POLICY = Policy.load()


def ctx(role: str = "supervisor", minutes: int = 0) -> CommandContext:
    return CommandContext(
        Actor(f"{role}-1", role), "test", NOW + timedelta(minutes=minutes), "hotline"
    )


def intake_of(**overrides: object) -> dict[str, object]:
    """A mobile billing complaint taken at the hotline, replied by SMS, with any field
    changed."""
    return {
        "channel": "hotline",
        "customer": {"id": "c1", "name": "n", "phone": "13800000000", "vip_tier": None},
        "service_number": "13800000000",
        "business_type": "mobile",
        "category": "billing",
        "area": None,
        "occurred_at": "2026-11-20T00:00:00+00:00",
        "received_at": None,
        "description": "d",
        "demand": "d",
        "reply_channel": "sms",
        "evidence": [],
        **overrides,
    }


def new_complaint(
    *, at: datetime = NOW, policy: Policy = POLICY, **intake_overrides: object
) -> Complaint:
    """That complaint (intake_of) accepted at `at` (NOW: Monday 10:00 Beijing)."""
    return Complaint.accept(
        complaint_id=uuid4(),
        acceptance_no="261123-000001-8",
        intake=intake_of(**intake_overrides),
        repeat_of=None,
        policy=policy,
        ctx=CommandContext(Actor("agent-1", "agent"), "test", at, "hotline"),
    )


Step = Callable[[Complaint], None]

COMMANDS: dict[str, Step] = {
    "refuse": lambda c: c.refuse(RefusalReason.OUT_OF_SCOPE, "why", "where", ctx()),
    "assign": lambda c: c.assign("network", "inv-7", Complexity.COMPLEX, POLICY, ctx()),
    "add_evidence": lambda c: c.add_evidence("call_record", "CDR-1", "s", ctx()),
    "extend": lambda c: c.extend("more time", NOW + timedelta(days=14), "notice", POLICY, ctx()),
    "record_findings": lambda c: c.record_findings("c", "rule 7", "cell outage", True, ctx()),
    "propose_resolution": lambda c: c.propose_resolution(
        ["fix cell"],
        [{"type": "refund", "amount": "10.00"}],
        "eng-1",
        NOW + timedelta(days=2),
        ctx(),
    ),
    "reply": lambda c: c.reply("sms", "c", "b", "p", "done", POLICY, ctx()),
    "escalate": lambda c: c.escalate(
        EscalationTrigger.MAJOR_INCIDENT, "r", Level.HEADQUARTERS, POLICY, ctx()
    ),
    "assign_handler": lambda c: c.assign_handler("hq-sup-2", ctx()),
    "review": lambda c: c.review(ReviewOutcome.REVISED, "n", POLICY, ctx()),
    "pause_clock": lambda c: c.pause_clock("waiting for customer", ctx()),
    "resume_clock": lambda c: c.resume_clock(ctx(minutes=30)),
    "record_callback": lambda c: c.record_callback(
        Satisfaction.SATISFIED, True, "ok", POLICY, ctx()
    ),
    "record_unreached_callback": lambda c: c.record_unreached_callback("no answer", ctx()),
    "escalate_missed": lambda c: c.escalate_missed("reply", POLICY, ctx(minutes=60 * 24 * 30)),
    "record_notification": lambda c: c.record_notification(
        next(iter(c.notifications), "none"), sent=True, detail="gw-1", ctx=ctx()
    ),
    "archive": lambda c: c.archive("summary", ctx()),
    "join_incident": lambda c: c.join_incident(INCIDENT, 20, POLICY, ctx("system")),
}
INCIDENT = "8a1f6d0e-5b7c-5e2a-9f3d-0c4b1a2e3d4f"

#: A way to bring a fresh complaint into each status.
PATHS: dict[Status, list[str]] = {
    Status.ACCEPTED: [],
    Status.REFUSED: ["refuse"],
    Status.INVESTIGATING: ["assign"],
    Status.RESOLUTION_PROPOSED: ["assign", "record_findings", "propose_resolution"],
    Status.REPLIED: ["assign", "record_findings", "propose_resolution", "reply"],
    Status.ESCALATED: ["escalate"],
    Status.CALLBACK_DONE: [
        "assign",
        "record_findings",
        "propose_resolution",
        "reply",
        "record_callback",
    ],
    Status.ARCHIVED: [
        "assign",
        "record_findings",
        "propose_resolution",
        "reply",
        "record_callback",
        "archive",
    ],
}

#: What each status allows, written out by hand (not read from the lifecycle module, so a wrong
#: entry there fails here): the commands that succeed on a complaint brought into the status
#: by the path above. Some are refused by their own rules although the status allows them:
#: escalating at headquarters, resuming a clock that runs, a reply before findings.
LEGAL: dict[Status, set[str]] = {
    Status.ACCEPTED: {
        "refuse",
        "assign",
        "escalate",
        "escalate_missed",
        "pause_clock",
    },
    Status.REFUSED: {"archive"},  # escalating it needs a regulator appeal
    Status.INVESTIGATING: {
        "assign",
        "add_evidence",
        "extend",
        "record_findings",
        "escalate",
        "escalate_missed",
        "pause_clock",
    },
    Status.RESOLUTION_PROPOSED: {
        "reply",
        "escalate",
        "escalate_missed",
        "pause_clock",
    },
    Status.REPLIED: {"escalate", "record_callback", "record_unreached_callback"},
    Status.ESCALATED: {
        "add_evidence",
        "assign_handler",
        "review",
        "escalate_missed",
        "pause_clock",
    },
    Status.CALLBACK_DONE: {"escalate", "archive"},
    Status.ARCHIVED: set(),
}
#: Legal whatever the status, archived included: the gateway's answer to a message already
#: requested (the acknowledgement is one from the start), and a major incident's link.
ALWAYS_LEGAL = {"record_notification", "join_incident"}
for legal in LEGAL.values():
    legal.update(ALWAYS_LEGAL)


def in_status(status: Status) -> Complaint:
    complaint = new_complaint()
    for step in PATHS[status]:
        COMMANDS[step](complaint)
    assert complaint.status == status
    complaint.collect_events()
    return complaint


def test_every_status_is_reachable() -> None:
    assert set(PATHS) == set(Status)


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_in_status(status: Status, command: str) -> None:
    complaint = in_status(status)
    version = complaint.version
    legal = command in LEGAL[status]
    if legal:
        COMMANDS[command](complaint)
        assert complaint.collect_events(), "a legal command records an event"
    else:
        with pytest.raises(InvalidTransition) as raised:
            COMMANDS[command](complaint)
        assert raised.value.status == status
        assert complaint.version == version
        assert complaint.collect_events() == []


def test_archived_takes_no_command() -> None:
    complaint = in_status(Status.ARCHIVED)
    for name, command in COMMANDS.items():
        if name in ALWAYS_LEGAL:
            continue  # a late gateway answer is still recorded; an incident links it
        with pytest.raises(InvalidTransition):
            command(complaint)


@pytest.mark.parametrize(
    ("path", "done"),
    [
        (["assign"], {"done": "escalated", "from_level": "city", "to_level": "provincial"}),
        (
            ["escalate"],  # to headquarters
            {"done": "linked", "why": "at_headquarters"},
        ),
        (["refuse"], {"done": "linked", "why": "refused"}),
        (PATHS[Status.ARCHIVED], {"done": "linked", "why": "archived"}),
    ],
)
def test_a_major_incident_links_every_member_and_escalates_those_that_can_go_up(
    path: list[str], done: dict[str, str]
) -> None:
    complaint = new_complaint()
    for step in path:
        COMMANDS[step](complaint)
    status, level = complaint.status, complaint.level
    complaint.collect_events()
    assert complaint.join_incident(INCIDENT, 20, POLICY, ctx("system")) == done
    events = [type(e).__name__ for e in complaint.collect_events()]
    assert complaint.incident_id == INCIDENT
    if done["done"] == "escalated":
        assert events == ["IncidentLinked", "Escalated"]
        assert complaint.escalations[-1]["trigger"] == "major_incident"
        assert INCIDENT in complaint.escalations[-1]["reason"]
        assert (complaint.status, complaint.level) == ("escalated", "provincial")
    else:
        assert events == ["IncidentLinked"]
        assert (complaint.status, complaint.level) == (status, level)
    # Joining again records nothing; another incident is refused.
    assert complaint.join_incident(INCIDENT, 21, POLICY, ctx("system")) is None
    assert complaint.collect_events() == []
    with pytest.raises(InvalidCommand):
        complaint.join_incident("another-incident", 20, POLICY, ctx("system"))


def test_owner_moves_from_first_contact_to_investigator_to_level() -> None:
    complaint = new_complaint()
    assert complaint.owner == complaint.first_contact_owner == "agent-1"
    COMMANDS["assign"](complaint)
    assert complaint.owner == "inv-7"
    complaint.escalate(
        EscalationTrigger.CUSTOMER_DISSATISFIED, "r", Level.PROVINCIAL, POLICY, ctx()
    )
    assert complaint.owner == "provincial-supervisors"
    assert complaint.level == Level.PROVINCIAL


def test_escalation_only_goes_up() -> None:
    complaint = new_complaint()
    complaint.escalate(EscalationTrigger.MAJOR_INCIDENT, "r", Level.PROVINCIAL, POLICY, ctx())
    with pytest.raises(InvalidTransition):
        complaint.escalate(EscalationTrigger.MAJOR_INCIDENT, "r", Level.PROVINCIAL, POLICY, ctx())
    complaint.collect_events()
    complaint.escalate(EscalationTrigger.MAJOR_INCIDENT, "r", Level.HEADQUARTERS, POLICY, ctx())
    (escalated,) = complaint.collect_events()
    assert escalated.handover["level"] == "provincial"  # the lower level hands over
    assert [e["to_level"] for e in complaint.escalations] == ["provincial", "headquarters"]


def test_regulator_appeal_reopens_a_refusal_with_its_deadline() -> None:
    complaint = in_status(Status.REFUSED)
    due = NOW + timedelta(days=10)
    complaint.escalate(
        EscalationTrigger.REGULATOR_APPEAL,
        "appeal",
        Level.HEADQUARTERS,
        POLICY,
        ctx(),
        regulator_ref="MIIT-2026-001",
        regulator_due_at=due,
    )
    assert complaint.status == Status.ESCALATED
    assert complaint.deadlines["regulator_appeal"]["due_at"] == due.isoformat()


def test_dissatisfied_callback_escalates_in_the_same_save() -> None:
    complaint = in_status(Status.REPLIED)
    complaint.record_callback(Satisfaction.DISSATISFIED, False, "still no signal", POLICY, ctx())
    events = complaint.collect_events()
    assert [type(e).__name__ for e in events] == ["CallbackRecorded", "Escalated"]
    assert complaint.status == Status.ESCALATED
    assert complaint.escalations[-1]["trigger"] == "customer_dissatisfied"


def test_extension_only_for_complex_and_only_later() -> None:
    simple = new_complaint()
    simple.assign("network", "inv-7", Complexity.SIMPLE, POLICY, ctx())
    assert simple.deadlines["investigation"]["amount"] == 72  # hours
    with pytest.raises(InvalidTransition):
        COMMANDS["extend"](simple)
    complex_ = new_complaint()
    COMMANDS["assign"](complex_)
    assert complex_.deadlines["investigation"]["unit"] == "working_days"
    with pytest.raises(InvalidCommand):
        complex_.extend("r", NOW, "notice", POLICY, ctx())
    COMMANDS["extend"](complex_)
    assert complex_.extensions[0]["previous_due_at"] != complex_.extensions[0]["new_due_at"]


def test_reply_goes_through_the_customers_channel() -> None:
    complaint = in_status(Status.RESOLUTION_PROPOSED)
    with pytest.raises(InvalidCommand):
        complaint.reply("email", "c", "b", "p", "e", POLICY, ctx())


def test_upheld_complaint_needs_a_resolution_before_the_reply() -> None:
    complaint = in_status(Status.INVESTIGATING)
    complaint.record_findings("c", "b", "r", True, ctx())
    with pytest.raises(InvalidTransition):
        complaint.reply("sms", "c", "b", "p", "e", POLICY, ctx())
    rejected = in_status(Status.INVESTIGATING)
    rejected.record_findings("c", "b", "r", False, ctx())
    rejected.reply("sms", "c", "b", "p", "e", POLICY, ctx())
    assert rejected.status == Status.REPLIED


def test_deadlines_are_met_by_their_events_and_missed_after_due() -> None:
    complaint = in_status(Status.INVESTIGATING)
    complaint.record_findings("c", "b", "r", True, ctx(minutes=60))
    states = {d["name"]: d["state"] for d in complaint.deadline_states(NOW + timedelta(days=30))}
    assert states["investigation"] == "met"
    assert states["reply"] == "missed"  # never replied, long past due
    assert {d["name"]: d["state"] for d in complaint.deadline_states(NOW)}["reply"] == "running"


def test_pause_moves_pausable_deadlines_by_the_pause() -> None:
    complaint = in_status(Status.INVESTIGATING)
    before = dict(complaint.deadlines)
    complaint.pause_clock("waiting for the customer's bill", ctx())
    complaint.resume_clock(ctx(minutes=90))
    for name, deadline in complaint.deadlines.items():
        shift = datetime.fromisoformat(deadline["due_at"]) - datetime.fromisoformat(
            before[name]["due_at"]
        )
        assert shift == (timedelta(minutes=90) if deadline["pausable"] else timedelta(0)), name


def test_accept_refuses_times_in_the_future() -> None:
    with pytest.raises(InvalidCommand):
        new_complaint(occurred_at=(NOW + timedelta(hours=1)).isoformat())


def test_replay_rebuilds_the_same_state() -> None:
    complaint = in_status(Status.CALLBACK_DONE)
    fresh = new_complaint()
    events = fresh.collect_events()
    for step in PATHS[Status.CALLBACK_DONE]:
        COMMANDS[step](fresh)
    events += fresh.collect_events()
    rebuilt = None
    for e in events:
        rebuilt = e.mutate(rebuilt)
    assert rebuilt is not None
    assert rebuilt.status == complaint.status
    assert rebuilt.version == fresh.version
    assert rebuilt.deadlines == fresh.deadlines


def test_upheld_review_returns_to_the_handling_it_upheld() -> None:
    complaint = in_status(Status.RESOLUTION_PROPOSED)
    complaint.escalate(EscalationTrigger.DEADLINE_MISSED, "late", Level.PROVINCIAL, POLICY, ctx())
    complaint.review(ReviewOutcome.UPHELD, "the plan is right", POLICY, ctx())
    assert complaint.status == Status.RESOLUTION_PROPOSED
    assert complaint.findings is not None and complaint.resolution is not None
    revised = in_status(Status.RESOLUTION_PROPOSED)
    revised.escalate(EscalationTrigger.DEADLINE_MISSED, "late", Level.PROVINCIAL, POLICY, ctx())
    revised.review(ReviewOutcome.REVISED, "investigate again", POLICY, ctx())
    assert revised.status == Status.INVESTIGATING
    assert revised.findings is None and revised.resolution is None


def test_state_holds_plain_strings_so_snapshots_round_trip_exactly() -> None:
    complaint = in_status(Status.ESCALATED)
    assert type(complaint.status) is str and type(complaint.level) is str


def test_replies_and_progress_notices_request_messages() -> None:
    complaint = in_status(Status.INVESTIGATING)
    COMMANDS["extend"](complaint)
    complaint.record_findings("c", "b", "r", False, ctx())
    complaint.reply("sms", "c", "b", "p", "e", POLICY, ctx())
    assert [
        (n["id"], n["kind"], n["channel"], n["status"]) for n in complaint.notifications.values()
    ] == [
        ("ack-1", "acknowledgement", "sms", "pending"),
        ("progress-1", "progress_notice", "sms", "pending"),
        ("reply-1", "reply", "sms", "pending"),
    ]
    complaint.record_notification("reply-1", sent=False, detail="503", ctx=ctx())
    complaint.record_notification("reply-1", sent=True, detail="gw-9", ctx=ctx())
    assert complaint.notifications["reply-1"]["attempts"] == 1
    assert complaint.notifications["reply-1"]["status"] == "sent"
    with pytest.raises(InvalidTransition):
        complaint.record_notification("reply-1", sent=True, detail="gw-9", ctx=ctx())
    with pytest.raises(InvalidCommand):
        complaint.record_notification("reply-7", sent=True, detail="x", ctx=ctx())


def test_one_lapse_escalates_once_then_the_levels_own_limits_run_and_alert_at_the_top() -> None:
    complaint = in_status(Status.INVESTIGATING)
    month = 60 * 24 * 30  # minutes: a month on, every limit has passed
    with pytest.raises(InvalidTransition):
        complaint.escalate_missed("reply", POLICY, ctx())  # not due yet
    complaint.escalate_missed("reply", POLICY, ctx(minutes=month))
    assert complaint.status == Status.ESCALATED and complaint.level == Level.PROVINCIAL
    assert complaint.escalations[-1]["trigger"] == "deadline_missed"
    # Every limit passed by then went up with it: one escalation, not one a limit.
    for name in ("investigation", "reply", "resolution", "operator_answer"):
        assert complaint.deadlines[name]["escalated_at"], name
    with pytest.raises(InvalidTransition):
        complaint.escalate_missed("investigation", POLICY, ctx(minutes=month))
    # The province's own limits run now: nobody named within 4 hours takes it higher.
    complaint.escalate_missed("escalation_assignment", POLICY, ctx(minutes=month + 5 * 60))
    assert complaint.level == Level.HEADQUARTERS
    # At the top there is no higher level: the supervisors are alerted, the limit runs again.
    complaint.escalate_missed("escalation_assignment.2", POLICY, ctx(minutes=month + 10 * 60))
    assert complaint.level == Level.HEADQUARTERS
    assert [a["deadline"] for a in complaint.alerts] == ["escalation_assignment.2"]
    assert type(complaint.collect_events()[-1]).__name__ == "SupervisorsAlerted"
    assert complaint.deadlines["escalation_assignment.3"]["follows"] == "escalation_assignment.2"


LATE = 60 * 24 * 30  # minutes: a month on, every limit has passed


def test_reassigning_after_a_missed_limit_does_not_escalate_it_again() -> None:
    complaint = new_complaint()
    complaint.escalate_missed("investigation", POLICY, ctx(minutes=LATE))
    complaint.review(ReviewOutcome.UPHELD, "stands", POLICY, ctx(minutes=LATE))
    assert complaint.status == Status.ACCEPTED
    complaint.assign("network", "inv-7", Complexity.SIMPLE, POLICY, ctx(minutes=LATE))
    with pytest.raises(InvalidTransition):
        complaint.escalate_missed("investigation", POLICY, ctx(minutes=LATE + 1))


def test_an_extension_comes_before_the_limit_passes_and_rearms_it() -> None:
    late = new_complaint()
    late.assign("network", "inv-7", Complexity.COMPLEX, POLICY, ctx())
    with pytest.raises(InvalidTransition):
        late.extend("r", NOW + timedelta(days=60), "notice", POLICY, ctx(minutes=LATE))
    on_time = new_complaint()
    on_time.assign("network", "inv-7", Complexity.COMPLEX, POLICY, ctx())
    on_time.extend("r", NOW + timedelta(days=10), "notice", POLICY, ctx(minutes=60))
    on_time.escalate_missed("investigation", POLICY, ctx(minutes=60 * 24 * 11))
    assert on_time.deadlines["investigation"]["escalated_at"]


def test_only_a_reply_from_headquarters_answers_an_appeal_and_archive_closes_the_rest() -> None:
    complaint = in_status(Status.CALLBACK_DONE)
    complaint.escalate(
        EscalationTrigger.REGULATOR_APPEAL,
        "appeal",
        Level.HEADQUARTERS,
        POLICY,
        ctx(),
        regulator_ref="MIIT-1",
        regulator_due_at=NOW + timedelta(days=5),
    )
    complaint.review(ReviewOutcome.UPHELD, "answer stands", POLICY, ctx(minutes=10))
    assert complaint.deadlines["regulator_appeal"]["met_at"] is None  # a review is internal
    # Upheld with its findings and plan: back to the handling, to send the answer from here.
    assert complaint.status == Status.RESOLUTION_PROPOSED
    complaint.reply("sms", "c", "b", "p", "e", POLICY, ctx(minutes=20))
    assert (
        complaint.deadlines["regulator_appeal"]["met_at"]
        == (NOW + timedelta(minutes=20)).isoformat()
    )
    complaint.record_callback(Satisfaction.SATISFIED, True, "ok", POLICY, ctx(minutes=30))
    complaint.archive("done", ctx(minutes=40))
    assert not complaint.running_limits(NOW + timedelta(minutes=40))


def test_escalating_by_hand_for_a_missed_limit_marks_it() -> None:
    complaint = new_complaint()
    complaint.escalate(
        EscalationTrigger.DEADLINE_MISSED, "late", Level.PROVINCIAL, POLICY, ctx(minutes=LATE)
    )
    with pytest.raises(InvalidTransition):
        complaint.escalate_missed("reply", POLICY, ctx(minutes=LATE + 1))


def test_a_paused_limit_is_not_escalated() -> None:
    complaint = in_status(Status.INVESTIGATING)
    complaint.pause_clock("waiting for the customer", ctx())
    with pytest.raises(InvalidTransition):
        complaint.escalate_missed("investigation", POLICY, ctx(minutes=LATE))


def test_a_message_the_gateway_refuses_fails_for_good() -> None:
    complaint = in_status(Status.REPLIED)
    complaint.record_notification("reply-1", sent=False, detail="422", ctx=ctx(), final=True)
    assert complaint.notifications["reply-1"]["status"] == "failed"
    with pytest.raises(InvalidTransition):
        complaint.record_notification("reply-1", sent=True, detail="gw", ctx=ctx())
