"""The lifecycle's facts, each stated once.

For every status: the commands it allows, whether it is final (nothing runs on), and what
happens next. For the time limits: the events that can meet a limit and the events that close
every limit still running, what opens limits and which are bound to a status. The aggregate,
the views, the deadline watch, major incidents, retention and the policy's validation all read
them from here, so adding a command or a status touches this module and the aggregate (and,
for a command clients give over HTTP, its route and `shared.http.routes`).

A missing entry is caught when this module is imported, not on a read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.domain.codes import Role, Status


class Command(StrEnum):
    """The aggregate's commands, by the name of its method."""

    REFUSE = "refuse"
    ASSIGN = "assign"
    ADD_EVIDENCE = "add_evidence"
    EXTEND = "extend"
    RECORD_FINDINGS = "record_findings"
    PROPOSE_RESOLUTION = "propose_resolution"
    REPLY = "reply"
    ESCALATE = "escalate"
    ASSIGN_HANDLER = "assign_handler"
    REVIEW = "review"
    ESCALATE_MISSED = "escalate_missed"
    PAUSE_CLOCK = "pause_clock"
    RESUME_CLOCK = "resume_clock"
    RECORD_CALLBACK = "record_callback"
    RECORD_UNREACHED_CALLBACK = "record_unreached_callback"
    RECORD_NOTIFICATION = "record_notification"
    CONFIRM_NOTIFICATION = "confirm_notification"
    ARCHIVE = "archive"
    JOIN_INCIDENT = "join_incident"
    RECALCULATE_DEADLINES = "recalculate_deadlines"


C = Command

#: Commands only the complaint's named owner may give (专人负责), or a supervisor; anyone else
#: is told who owns it.
OWNER_ONLY = frozenset(
    {
        C.ADD_EVIDENCE,
        C.EXTEND,
        C.PAUSE_CLOCK,
        C.RESUME_CLOCK,
        C.RECORD_FINDINGS,
        C.PROPOSE_RESOLUTION,
        C.REPLY,
    }
)
#: Roles that may act on a complaint whoever owns it.
OVERSEERS = frozenset({Role.SUPERVISOR, Role.ADMIN})

#: Commands whose outcome is a fact whatever the status is now, so every status allows them: a
#: message already requested was sent or not, a letter was posted; a complaint is one of a
#: major incident's (a refused or archived one is linked, not escalated); the official holiday
#: schedule corrects the limits still running (a final status has none).
ALWAYS = frozenset(
    {C.RECORD_NOTIFICATION, C.CONFIRM_NOTIFICATION, C.JOIN_INCIDENT, C.RECALCULATE_DEADLINES}
)


@dataclass(frozen=True)
class Stage:
    """What a status means for the complaint."""

    #: The commands legal in this status. Extra rules (findings before a reply, levels only
    #: going up, …) are the aggregate's, checked in the command itself.
    commands: frozenset[Command]
    #: No limit runs on in a final status, and no watch looks at it.
    final: bool
    #: What happens next, as a read shows it.
    next_steps: str


STAGES: dict[Status, Stage] = {
    Status.ACCEPTED: Stage(
        frozenset(
            {C.REFUSE, C.ASSIGN, C.ESCALATE, C.ESCALATE_MISSED, C.PAUSE_CLOCK, C.RESUME_CLOCK}
        ),
        final=False,
        next_steps="The complaint is routed to the responsible department, which names one "
        "investigator. The customer is told the result through the chosen reply channel.",
    ),
    Status.REFUSED: Stage(
        # Only a regulator appeal reopens a refused complaint (the escalation checks it).
        frozenset({C.ESCALATE, C.ARCHIVE}),
        final=True,
        next_steps="Not accepted. The customer has been told why and where else to turn.",
    ),
    Status.INVESTIGATING: Stage(
        frozenset(
            {
                C.ASSIGN,
                C.ADD_EVIDENCE,
                C.EXTEND,
                C.RECORD_FINDINGS,
                C.PROPOSE_RESOLUTION,
                C.REPLY,
                C.ESCALATE,
                C.ESCALATE_MISSED,
                C.PAUSE_CLOCK,
                C.RESUME_CLOCK,
            }
        ),
        final=False,
        next_steps="The investigator gathers evidence and records findings.",
    ),
    Status.RESOLUTION_PROPOSED: Stage(
        frozenset({C.REPLY, C.ESCALATE, C.ESCALATE_MISSED, C.PAUSE_CLOCK, C.RESUME_CLOCK}),
        final=False,
        next_steps="The resolution is carried out and the customer gets the reply.",
    ),
    Status.REPLIED: Stage(
        frozenset({C.ESCALATE, C.ESCALATE_MISSED, C.RECORD_CALLBACK, C.RECORD_UNREACHED_CALLBACK}),
        final=False,
        next_steps="A callback agent asks the customer whether the problem is solved.",
    ),
    Status.ESCALATED: Stage(
        frozenset(
            {
                C.ADD_EVIDENCE,
                C.ESCALATE,
                C.ASSIGN_HANDLER,
                C.REVIEW,
                C.ESCALATE_MISSED,
                C.PAUSE_CLOCK,
                C.RESUME_CLOCK,
            }
        ),
        final=False,
        next_steps="A higher level reviews the complaint with the materials handed over.",
    ),
    Status.CALLBACK_DONE: Stage(
        frozenset({C.ESCALATE, C.ESCALATE_MISSED, C.ARCHIVE}),
        final=False,
        next_steps="The complaint can be archived.",
    ),
    Status.ARCHIVED: Stage(
        frozenset(),
        final=True,
        next_steps="Archived. A new complaint about the same matter is linked as a repeat.",
    ),
}

#: Statuses in which no limit runs and no watch looks: refused and archived.
FINAL: frozenset[Status] = frozenset(s for s, stage in STAGES.items() if stage.final)
#: Every other status: the complaint is open, and some limit must be running.
OPEN: frozenset[Status] = frozenset(STAGES) - FINAL
#: The status after which a customer's personal data starts its retention period.
RETAINED_FROM = Status.ARCHIVED
#: Statuses in which the customer has been given the answer: a later complaint about the same
#: matter without new grounds may be refused as a repeat with a conclusion.
CONCLUDED = frozenset({Status.REPLIED, Status.CALLBACK_DONE, Status.ARCHIVED})

#: The complaint's events that can meet a limit (a policy rule's `met_by`).
MILESTONES = frozenset(
    {
        "Accepted",
        "Assigned",
        "HandlerAssigned",
        "FindingsRecorded",
        "ResolutionProposed",
        "Replied",
        "Reviewed",
        "CallbackRecorded",
        "Refused",
        "Archived",
    }
)
#: Events after which no limit runs on: each limit still running is closed then (one that
#: had passed stays missed).
CLOSING = frozenset({"Refused", "Archived"})


class Opening(StrEnum):
    """What opens a limit: the situation a complaint enters that asks someone to act next.

    A policy rule names its opening (`opens_on`, default `accepted`); when a complaint enters
    that situation, every rule of that opening that matches the complaint's facts starts a
    limit from that moment. So while a complaint is open some limit always runs, saying who
    must act next and by when.
    """

    #: Accepted: investigation, reply, resolution, repair and the others of the standards.
    ACCEPTED = "accepted"
    #: Escalated to a level (the `level` fact is the new one): its supervisors name a
    #: handler, and the level decides.
    ESCALATED = "escalated"
    #: A review sent the complaint back to handling: investigate and reply again.
    REOPENED = "reopened"
    #: Replied: the callback (回访) is due.
    REPLIED = "replied"
    #: The callback found the customer satisfied and the problem solved: archive it (归档).
    CALLBACK_DONE = "callback_done"


#: Limits of these openings ask for an action that only their status allows (a callback, an
#: archive, a level's review): leaving the status closes them. The others are promises to the
#: customer (a reply by a date) that run on whatever happens meanwhile.
BOUND: dict[Opening, Status] = {
    Opening.ESCALATED: Status.ESCALATED,
    Opening.REPLIED: Status.REPLIED,
    Opening.CALLBACK_DONE: Status.CALLBACK_DONE,
}

#: The status a review sends a complaint back to, and what that opens. Back to handling
#: opens a new investigation and reply; back to a reply, its callback; back to a callback
#: that found the customer content, the archive.
REOPENING: dict[Status, Opening] = {
    Status.ACCEPTED: Opening.REOPENED,
    Status.INVESTIGATING: Opening.REOPENED,
    Status.RESOLUTION_PROPOSED: Opening.REOPENED,
    Status.REPLIED: Opening.REPLIED,
    Status.CALLBACK_DONE: Opening.CALLBACK_DONE,
}


def allows(status: Status | str, command: Command) -> bool:
    """Whether `command` is legal in `status` (before the command's own extra rules)."""
    return command in ALWAYS or command in STAGES[Status(status)].commands


def next_steps(status: Status | str) -> str:
    return STAGES[Status(status)].next_steps


def _check() -> None:
    missing = set(Status) - set(STAGES)
    if missing:  # pragma: no cover - a programming error, caught on import
        raise RuntimeError(f"lifecycle: no stage for {sorted(s.value for s in missing)}")
    if not CLOSING <= MILESTONES:  # pragma: no cover
        raise RuntimeError("lifecycle: a closing event must be a milestone")
    if set(REOPENING) != OPEN - {Status.ESCALATED}:  # pragma: no cover
        raise RuntimeError("lifecycle: a review must know what each open status reopens")


_check()
