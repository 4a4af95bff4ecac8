"""Every refusal of the aggregate, with the exact words staff read in the problem's `detail`.

A frontend shows these sentences as they are, so each is written out here by hand: the command
and the status a 409 names, what a 422 says to do, who a 403 names. A refused command records
nothing."""

from __future__ import annotations

import re
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
    Status,
)
from shared.domain.complaint import Complaint
from shared.domain.context import Actor, CommandContext
from shared.domain.errors import (
    DomainError,
    InvalidCommand,
    InvalidTransition,
    NotOwner,
    NotPermitted,
)
from tests.unit.test_transitions import NOW, POLICY, ctx, in_status, new_complaint

DAY = timedelta(days=1)


def by(actor_id: str, role: str = "supervisor", *, hours: float = 0) -> CommandContext:
    """`actor_id` in `role` gives the command, `hours` after NOW."""
    return CommandContext(Actor(actor_id, role), "test", NOW + timedelta(hours=hours), "hotline")


def assigned(complexity: Complexity = Complexity.COMPLEX, **intake: object) -> Complaint:
    """Assigned to inv-7 at NOW (Monday 10:00 Beijing); a complex mobile complaint's
    investigation is due at the end of Wednesday, Beijing time (15:59:59 UTC)."""
    complaint = new_complaint(**intake)
    complaint.assign("network", "inv-7", complexity, POLICY, ctx())
    return complaint


def with_findings(upheld: bool = True, **intake: object) -> Complaint:
    complaint = assigned(**intake)
    complaint.record_findings("c", "rule 7", "cell outage", upheld, ctx())
    return complaint


def replied(**intake: object) -> Complaint:
    complaint = with_findings(False, **intake)
    complaint.reply(complaint.intake["reply_channel"], "c", "b", "p", "done", POLICY, ctx())
    return complaint


def at_headquarters() -> Complaint:
    complaint = new_complaint()
    complaint.escalate(EscalationTrigger.MAJOR_INCIDENT, "r", Level.HEADQUARTERS, POLICY, ctx())
    return complaint


def then(
    make: Callable[[], Complaint], *steps: Callable[[Complaint], object]
) -> Callable[[], Complaint]:
    """A complaint made by `make`, then taken through `steps`."""

    def made() -> Complaint:
        complaint = make()
        for step in steps:
            step(complaint)
        return complaint

    return made


Case = tuple[Callable[[], Complaint], Callable[[Complaint], object], type[DomainError], str]

CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- status (409)
    "a command the status does not allow names both": (
        lambda: in_status(Status.REPLIED),
        lambda c: c.assign("network", "inv-7", Complexity.SIMPLE, POLICY, ctx()),
        InvalidTransition,
        "Cannot assign a complaint whose status is 'replied'.",
    ),
    "archived takes no review": (
        lambda: in_status(Status.ARCHIVED),
        lambda c: c.review(ReviewOutcome.UPHELD, "n", POLICY, ctx()),
        InvalidTransition,
        "Cannot review a complaint whose status is 'archived'.",
    ),
    # ---------------------------------------------------------------- owner (403)
    "another investigator is told who owns it": (
        assigned,
        lambda c: c.add_evidence("call_record", "CDR-1", "s", by("inv-8", "investigator")),
        NotOwner,
        "Only inv-7, who owns this complaint, or a supervisor may add evidence.",
    ),
    "a level's group must name a handler first": (
        at_headquarters,
        lambda c: c.pause_clock("waiting", by("inv-7", "investigator")),
        NotOwner,
        "Only a supervisor: the headquarters-supervisors have not named its handler yet "
        "may pause clock.",
    ),
    "only a supervisor overrides the limitation check": (
        new_complaint,
        lambda c: c.refuse(
            RefusalReason.TIME_BARRED, "late", "court", by("agent-1", "agent"), override="old"
        ),
        NotPermitted,
        "Only a supervisor may override the limitation check.",
    ),
    # ---------------------------------------------------------------- intake (422)
    "an event in the future": (
        lambda: new_complaint(occurred_at=(NOW + timedelta(minutes=6)).isoformat()),
        lambda c: None,
        InvalidCommand,
        "occurred_at lies in the future.",
    ),
    "a receipt in the future": (
        lambda: new_complaint(
            channel="letter", received_at=(NOW + timedelta(minutes=6)).isoformat()
        ),
        lambda c: None,
        InvalidCommand,
        "received_at lies in the future.",
    ),
    # ---------------------------------------------------------------- refusal (422)
    "time_barred needs the limitation check": (
        new_complaint,
        lambda c: c.refuse(RefusalReason.TIME_BARRED, "late", "court", ctx()),
        InvalidCommand,
        "The complaint is not past the limitation period (fee disputes 5 months, others 2 "
        "years after the event): refuse it as time_barred only with a supervisor's "
        "override_reason.",
    ),
    "repeat_with_conclusion needs an earlier complaint": (
        new_complaint,
        lambda c: c.refuse(RefusalReason.REPEAT_WITH_CONCLUSION, "again", "none", ctx()),
        InvalidCommand,
        "repeat_with_conclusion needs an earlier complaint of the same customer, service number "
        "and category that was replied or archived; this complaint repeats none.",
    ),
    "repeat_with_conclusion needs an answered one": (
        new_complaint,
        lambda c: c.refuse(
            RefusalReason.REPEAT_WITH_CONCLUSION, "again", "none", ctx(), earlier=assigned()
        ),
        InvalidCommand,
        "repeat_with_conclusion needs an earlier complaint of the same customer, service number "
        "and category that was replied or archived; the earlier one (261123-000001-8) is "
        "investigating.",
    ),
    # ---------------------------------------------------------------- extension
    "a simple complaint is not extended": (
        lambda: assigned(Complexity.SIMPLE),
        lambda c: c.extend("more", NOW + 3 * DAY, "n", POLICY, ctx()),
        InvalidTransition,
        "Cannot extend a complaint whose status is 'investigating'. Only complaints assessed "
        "as complex may be extended.",
    ),
    "nothing to extend once the findings are in": (
        then(
            with_findings,
            lambda c: c.escalate(
                EscalationTrigger.MAJOR_INCIDENT, "r", Level.PROVINCIAL, POLICY, ctx()
            ),
            lambda c: c.review(ReviewOutcome.UPHELD, "n", POLICY, ctx()),
        ),
        lambda c: c.extend("more", NOW + 3 * DAY, "n", POLICY, ctx()),
        InvalidTransition,
        "Cannot extend a complaint whose status is 'investigating'. No investigation limit is "
        "running.",
    ),
    "a passed limit is escalated, not extended": (
        assigned,
        lambda c: c.extend("more", NOW + 5 * DAY, "n", POLICY, by("sup", hours=72)),
        InvalidTransition,
        "Cannot extend a complaint whose status is 'investigating'. The investigation limit has "
        "passed: it is escalated, not extended.",
    ),
    "an extension must be later": (
        assigned,
        lambda c: c.extend("more", NOW + 2 * DAY, "n", POLICY, ctx()),
        InvalidCommand,
        "new_due_at must be later than the current investigation limit.",
    ),
    "an extension has a maximum": (
        assigned,
        # 10 working days after Wednesday 25 November: the end of Wednesday 9 December.
        lambda c: c.extend("more", datetime(2026, 12, 9, 16, tzinfo=UTC), "n", POLICY, ctx()),
        InvalidCommand,
        "new_due_at may be 2026-12-09T15:59:59+00:00 at the latest: policy choice: an "
        "extension ends at most 10 working days after the first investigation limit.",
    ),
    # ---------------------------------------------------------------- resolution and reply
    "a resolution before the findings": (
        then(
            lambda: in_status(Status.ESCALATED),
            lambda c: c.review(ReviewOutcome.REVISED, "n", POLICY, ctx()),
        ),
        lambda c: c.propose_resolution(["fix"], [], "eng-1", NOW + DAY, ctx()),
        InvalidTransition,
        "Cannot propose_resolution a complaint whose status is 'investigating'. Record the "
        "findings first.",
    ),
    "a resolution due in the past": (
        with_findings,
        lambda c: c.propose_resolution(["fix"], [], "eng-1", NOW, ctx()),
        InvalidCommand,
        "due_at of the resolution must lie in the future.",
    ),
    "a reply before the findings": (
        assigned,
        lambda c: c.reply("sms", "c", "b", "p", "e", POLICY, ctx()),
        InvalidTransition,
        "Cannot reply a complaint whose status is 'investigating'. Record the findings first.",
    ),
    "an upheld complaint needs a plan before the reply": (
        with_findings,
        lambda c: c.reply("sms", "c", "b", "p", "e", POLICY, ctx()),
        InvalidTransition,
        "Cannot reply a complaint whose status is 'investigating'. An upheld complaint needs a "
        "resolution plan first.",
    ),
    "the reply goes the customer's way": (
        lambda: with_findings(False),
        lambda c: c.reply("email", "c", "b", "p", "e", POLICY, ctx()),
        InvalidCommand,
        "The customer asked for replies by sms, not email.",
    ),
    # ---------------------------------------------------------------- escalation
    "only an appeal reopens a refusal": (
        lambda: in_status(Status.REFUSED),
        lambda c: c.escalate(
            EscalationTrigger.MAJOR_INCIDENT, "r", Level.HEADQUARTERS, POLICY, ctx()
        ),
        InvalidTransition,
        "Cannot escalate a complaint whose status is 'refused'. Only a regulator appeal "
        "reopens a refused complaint.",
    ),
    "an escalation goes up": (
        lambda: replied(),
        lambda c: c.escalate(EscalationTrigger.MAJOR_INCIDENT, "r", Level.CITY, POLICY, ctx()),
        InvalidTransition,
        "Cannot escalate a complaint whose status is 'replied'. The complaint is already at "
        "level 'city'; escalate to a higher level.",
    ),
    "one appeal is recorded once": (
        lambda: at_headquarters_with_appeal("MIIT-1"),
        lambda c: appeal(c, ctx(), NOW + 9 * DAY, ref="MIIT-1", reason="again"),
        InvalidCommand,
        "The regulator's appeal MIIT-1 is on record already.",
    ),
    "an appeal due in the past": (
        replied,
        lambda c: appeal(c, ctx(), NOW, ref="MIIT-2"),
        InvalidCommand,
        "due_at of the appeal must lie in the future.",
    ),
    # ---------------------------------------------------------------- a missed limit
    "no such limit": (
        new_complaint,
        lambda c: c.escalate_missed("callback", POLICY, ctx()),
        InvalidCommand,
        "The complaint has no 'callback' limit.",
    ),
    "a met limit": (
        lambda: with_findings(False),
        lambda c: c.escalate_missed("investigation", POLICY, ctx(minutes=60 * 24 * 10)),
        InvalidTransition,
        "Cannot escalate_missed a complaint whose status is 'investigating'. The investigation "
        "limit is met or escalated.",
    ),
    "a limit not due yet": (
        new_complaint,
        lambda c: c.escalate_missed("reply", POLICY, ctx()),
        InvalidTransition,
        "Cannot escalate_missed a complaint whose status is 'accepted'. reply is not due.",
    ),
    "a paused limit": (
        then(new_complaint, lambda c: c.pause_clock("waiting", ctx())),
        lambda c: c.escalate_missed("investigation", POLICY, ctx(minutes=60 * 24 * 30)),
        InvalidTransition,
        "Cannot escalate_missed a complaint whose status is 'accepted'. The clock of "
        "investigation is paused.",
    ),
    # ---------------------------------------------------------------- the rest
    "one major incident per complaint": (
        lambda: joined("inc-1"),
        lambda c: c.join_incident("inc-2", 20, POLICY, ctx("system")),
        InvalidCommand,
        "The complaint belongs to major incident inc-1.",
    ),
    "nothing to recalculate": (
        new_complaint,
        lambda c: c.recalculate_deadlines(POLICY, ctx("system")),
        InvalidCommand,
        "No running limit was counted on an estimated calendar that policy 2026.2 makes official.",
    ),
    "the handler named already": (
        lambda: at_headquarters_handled_by("hq-2"),
        lambda c: c.assign_handler("hq-2", ctx()),
        InvalidCommand,
        "hq-2 already handles this complaint.",
    ),
    "a clock paused twice": (
        then(new_complaint, lambda c: c.pause_clock("a", ctx())),
        lambda c: c.pause_clock("b", ctx()),
        InvalidTransition,
        "Cannot pause_clock a complaint whose status is 'accepted'. The clock is already paused.",
    ),
    "a running clock resumed": (
        new_complaint,
        lambda c: c.resume_clock(ctx()),
        InvalidTransition,
        "Cannot resume_clock a complaint whose status is 'accepted'. The clock is not paused.",
    ),
    "a gateway answer for no message": (
        new_complaint,
        lambda c: c.record_notification("reply-9", sent=True, detail="gw", ctx=ctx()),
        InvalidCommand,
        "No message 'reply-9' was requested.",
    ),
    "a gateway answer for a staff task": (
        lambda: replied(reply_channel="letter"),
        lambda c: c.record_notification("reply-1", sent=True, detail="gw", ctx=ctx()),
        InvalidCommand,
        "Message reply-1 is a task for staff to confirm.",
    ),
    "a gateway answer twice": (
        then(
            new_complaint,
            lambda c: c.record_notification("ack-1", sent=True, detail="gw-1", ctx=ctx()),
        ),
        lambda c: c.record_notification("ack-1", sent=False, detail="gw-2", ctx=ctx()),
        InvalidTransition,
        "Cannot record_notification a complaint whose status is 'accepted'. Message ack-1 is "
        "sent already.",
    ),
    "a confirmation of no task": (
        new_complaint,
        lambda c: c.confirm_notification("ack-7", "posted", ctx()),
        InvalidCommand,
        "No message 'ack-7' was requested.",
    ),
    "a confirmation of a gateway message": (
        new_complaint,
        lambda c: c.confirm_notification("ack-1", "posted", ctx()),
        InvalidCommand,
        "Message ack-1 goes through the gateway by sms, not through staff.",
    ),
    "a task confirmed twice": (
        then(
            lambda: replied(reply_channel="letter"),
            lambda c: c.confirm_notification("reply-1", "posted", ctx()),
        ),
        lambda c: c.confirm_notification("reply-1", "posted again", ctx()),
        InvalidTransition,
        "Cannot confirm_notification a complaint whose status is 'replied'. Message reply-1 is "
        "sent already.",
    ),
}


def appeal(
    complaint: Complaint,
    when: CommandContext,
    due_at: datetime,
    *,
    ref: str = "MIIT-7",
    reason: str = "appeal",
) -> None:
    """The regulator's appeal `ref`, to be answered by `due_at`: up to headquarters."""
    complaint.escalate(
        EscalationTrigger.REGULATOR_APPEAL,
        reason,
        Level.HEADQUARTERS,
        POLICY,
        when,
        regulator_ref=ref,
        regulator_due_at=due_at,
    )


def at_headquarters_with_appeal(ref: str) -> Complaint:
    complaint = replied()
    appeal(complaint, ctx(), NOW + 9 * DAY, ref=ref)
    return complaint


def at_headquarters_handled_by(handler: str) -> Complaint:
    complaint = at_headquarters()
    complaint.assign_handler(handler, ctx())
    return complaint


def joined(incident_id: str) -> Complaint:
    complaint = new_complaint()
    complaint.join_incident(incident_id, 20, POLICY, ctx("system"))
    return complaint


@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_command_says_why_and_records_nothing(case: str) -> None:
    make, command, error, message = CASES[case]
    if case.startswith(("an event", "a receipt")):  # refused at acceptance: no complaint
        with pytest.raises(error, match="^" + re.escape(message) + "$"):
            make()
        return
    complaint = make()
    complaint.collect_events()
    version = complaint.version
    with pytest.raises(error) as raised:
        command(complaint)
    assert type(raised.value) is error
    assert str(raised.value) == message
    if isinstance(raised.value, InvalidTransition):
        assert (raised.value.command, raised.value.status) == (
            message.split()[1],
            message.split("'")[1],
        )
    assert complaint.version == version
    assert complaint.collect_events() == []


def test_a_satisfied_callback_records_no_escalation() -> None:
    """(Counter-case of the dissatisfied one: nothing is refused and nothing goes up.)"""
    complaint = replied()
    complaint.record_callback(Satisfaction.SATISFIED, True, "ok", POLICY, ctx())
    assert [e.__class__.__name__ for e in complaint.collect_events()][-1] == "CallbackRecorded"
    assert complaint.level == "city"
