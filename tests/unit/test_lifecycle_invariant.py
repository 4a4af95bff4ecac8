"""No open complaint without a running limit.

The walk below starts from a fresh complaint and tries every command in every state it can
reach, with time passing between steps: "wait" lets the earliest running limit pass and the
deadline watch act as it does in production (every passed limit escalates, or alerts at
headquarters). After every command that succeeded, and after every watch, an open complaint
(neither refused nor archived) must have a limit running, saying who must act next.

States are told apart by what decides the next steps (status, level, findings, plan, pause,
owner, open limits), so the walk visits each of them once and still covers every path.
"""

from __future__ import annotations

import contextlib
import copy
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import uuid4

from shared.domain import deadlines as book
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
from shared.domain.errors import DomainError
from shared.domain.lifecycle import OPEN
from tests.unit.test_transitions import NOW, POLICY, new_complaint

Action = Callable[[Complaint, datetime], None]


def as_(role: str, at: datetime, who: str | None = None) -> CommandContext:
    return CommandContext(Actor(who or f"{role}-1", role), "test", at, "hotline")


def _next_level(c: Complaint) -> Level:
    return list(Level)[min(Level(c.level).rank + 1, len(Level) - 1)]


ACTIONS: dict[str, Action] = {
    "refuse": lambda c, t: c.refuse(RefusalReason.OUT_OF_SCOPE, "why", "where", as_("agent", t)),
    "assign simple": lambda c, t: c.assign(
        "net", "inv-7", Complexity.SIMPLE, POLICY, as_("supervisor", t)
    ),
    "assign complex": lambda c, t: c.assign(
        "net", "inv-7", Complexity.COMPLEX, POLICY, as_("supervisor", t)
    ),
    "evidence": lambda c, t: c.add_evidence("call_record", "CDR", "s", as_("supervisor", t)),
    "extend": lambda c, t: c.extend(
        "vendor", t + timedelta(days=8), "notice", POLICY, as_("supervisor", t)
    ),
    "findings upheld": lambda c, t: c.record_findings("c", "b", "r", True, as_("supervisor", t)),
    "findings rejected": lambda c, t: c.record_findings("c", "b", "r", False, as_("supervisor", t)),
    "resolution": lambda c, t: c.propose_resolution(
        ["fix"], [], "eng-1", t + timedelta(days=2), as_("supervisor", t)
    ),
    "reply": lambda c, t: c.reply("sms", "c", "b", "p", "e", POLICY, as_("supervisor", t)),
    "escalate": lambda c, t: c.escalate(
        EscalationTrigger.CUSTOMER_DISSATISFIED, "r", _next_level(c), POLICY, as_("agent", t)
    ),
    "appeal": lambda c, t: c.escalate(
        EscalationTrigger.REGULATOR_APPEAL,
        "appeal",
        Level.HEADQUARTERS,
        POLICY,
        as_("agent", t),
        regulator_ref="MIIT-1",
        regulator_due_at=t + timedelta(days=10),
    ),
    "name handler": lambda c, t: c.assign_handler("lvl-sup-3", as_("supervisor", t)),
    "review upheld": lambda c, t: c.review(ReviewOutcome.UPHELD, "n", POLICY, as_("supervisor", t)),
    "review revised": lambda c, t: c.review(
        ReviewOutcome.REVISED, "n", POLICY, as_("supervisor", t)
    ),
    "pause": lambda c, t: c.pause_clock("waiting", as_("supervisor", t)),
    "resume": lambda c, t: c.resume_clock(as_("supervisor", t)),
    "callback content": lambda c, t: c.record_callback(
        Satisfaction.SATISFIED, True, "ok", POLICY, as_("callback", t)
    ),
    "callback dissatisfied": lambda c, t: c.record_callback(
        Satisfaction.DISSATISFIED, False, "no", POLICY, as_("callback", t)
    ),
    "callback unreached": lambda c, t: c.record_unreached_callback("no answer", as_("callback", t)),
    "archive": lambda c, t: c.archive("done", as_("callback", t)),
    # A new incident each time: joining one's own incident again records nothing.
    "join incident": lambda c, t: c.join_incident(
        str(uuid4()), 20, POLICY, as_("system", t, "incident-watch")
    ),
}


def watch(complaint: Complaint, now: datetime) -> None:
    """What the deadline watch does at `now`: every passed limit escalates (alerts at the
    top), in one command, as services/escalation/watch.py does."""
    for key in book.passed(complaint.deadlines, now, paused=complaint.paused_at is not None):
        with contextlib.suppress(DomainError):  # met meanwhile, or paused: the watch skips it
            complaint.escalate_missed(key, POLICY, as_("system", now, "deadline-watch"))


def earliest_due(complaint: Complaint, now: datetime) -> datetime | None:
    running = [
        datetime.fromisoformat(complaint.deadlines[k]["due_at"])
        for k in complaint.running_limits(now)
        if not (complaint.paused_at and complaint.deadlines[k]["pausable"])
    ]
    return min(running) if running else None


def shape(complaint: Complaint, now: datetime) -> tuple[object, ...]:
    """What decides the next steps; two states of one shape behave alike."""
    return (
        complaint.status,
        complaint.level,
        complaint.findings is not None,
        complaint.resolution is not None,
        complaint.paused_at is not None,
        complaint.owner_is_group,
        (complaint.assignment or {}).get("complexity"),
        frozenset(d["name"] for d in complaint.deadline_states(now) if d["state"] == "running"),
        frozenset(d["name"] for d in complaint.deadlines.values() if book.is_pending(d)),
    )


def assert_watched(complaint: Complaint, now: datetime, path: list[str]) -> None:
    if complaint.status in OPEN:
        assert complaint.running_limits(now), (
            f"open complaint ({complaint.status}, {complaint.level}) with no running limit "
            f"after {' → '.join(path)}: "
            + str(
                {k: d["state"] for k, d in ((d["key"], d) for d in complaint.deadline_states(now))}
            )
        )


def test_every_path_keeps_a_limit_running_while_the_complaint_is_open() -> None:
    start = new_complaint()
    assert_watched(start, NOW, ["accept"])
    queue: deque[tuple[Complaint, datetime, list[str]]] = deque([(start, NOW, ["accept"])])
    seen = {shape(start, NOW)}
    steps = 0
    reached: set[str] = set()
    while queue:
        complaint, now, path = queue.popleft()
        if len(path) > 14:
            continue
        moves: list[tuple[str, Complaint, datetime]] = []
        for name, action in ACTIONS.items():
            later = now + timedelta(minutes=5)
            candidate = copy.deepcopy(complaint)
            try:
                action(candidate, later)
            except DomainError:
                continue
            moves.append((name, candidate, later))
        due = earliest_due(complaint, now)
        if due is not None:
            waited = copy.deepcopy(complaint)
            later = due + timedelta(minutes=1)
            watch(waited, later)
            moves.append(("wait", waited, later))
        for name, candidate, later in moves:
            steps += 1
            reached.add(candidate.status)
            assert_watched(candidate, later, [*path, name])
            key = shape(candidate, later)
            if key not in seen:
                seen.add(key)
                queue.append((candidate, later, [*path, name]))
    assert reached == set(Status)  # the walk went everywhere
    assert steps > 1000  # and took many paths to get there
