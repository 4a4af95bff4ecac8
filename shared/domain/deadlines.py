"""The bookkeeping of a complaint's time limits, and their re-assessment under another policy.

A complaint keeps its deadlines as plain dicts by limit name (they are stored in events and
snapshots as they are). The functions here are the only code that changes them, whether the
aggregate applies one of its events or `reassess` replays a complaint's timeline under another
policy version. So a re-analysis under the policy that applied at the time gives exactly the
deadlines the complaint had, and under another policy what the same history would have met.

A timeline is the list of steps that matter to time limits, in event order, each a plain dict
with `event` and `at` (ISO, UTC):

- `Accepted` — the limits start (with the intake facts and `received_at` for non-live channels)
- `Assigned` with `complexity` — the investigation limit is chosen again for that complexity
- `Extended` with `deadline` and `seconds` — a complex investigation got that much longer
- `ClockResumed` with `seconds` — the pausable limits stood still that long
- `Escalated` with `deadlines` — limits that do not come from the policy (a regulator's)
- any event in `MILESTONES` — meets the limits whose `met_by` names it; `Refused` and
  `Archived` also close every limit still running
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.lifecycle import CLOSING
from shared.domain.policy import Policy

Book = dict[str, dict[str, Any]]


def iso(value: datetime) -> str:
    """Times are stored in UTC, whatever offset a frontend sent."""
    return value.astimezone(UTC).isoformat()


def start(book: Book, deadlines: Iterable[dict[str, Any]]) -> None:
    for deadline in deadlines:
        book[deadline["name"]] = {**deadline, "met_at": None}


def is_running(book: Book, name: str) -> bool:
    deadline = book.get(name)
    return deadline is None or deadline.get("met_at") is None


def replace(book: Book, deadline: dict[str, Any], at: datetime) -> None:
    """A new limit replaces a running one; if the old one had already passed and escalated
    and the new one has passed too, that escalation still stands (no second one)."""
    if not is_running(book, deadline["name"]):
        return
    old = book.get(deadline["name"]) or {}
    escalated = old.get("escalated_at")
    if escalated and datetime.fromisoformat(deadline["due_at"]) < at:
        book[deadline["name"]] = {**deadline, "met_at": None, "escalated_at": escalated}
    else:
        start(book, [deadline])


def meet(book: Book, event_name: str, at: datetime) -> None:
    for name, deadline in book.items():
        if event_name in deadline["met_by"] and deadline.get("met_at") is None:
            book[name] = {**deadline, "met_at": iso(at)}
    if event_name in CLOSING:
        for name, deadline in book.items():
            if deadline.get("met_at") is None:
                book[name] = {**deadline, "met_at": iso(at)}


def extend(book: Book, name: str, new_due_at: str) -> None:
    book[name] = {**book[name], "due_at": new_due_at, "escalated_at": None}


def shift_paused(book: Book, paused_for: timedelta) -> None:
    """The pausable limits still running move on by the time the clock stood still."""
    for name, deadline in book.items():
        if deadline["pausable"] and not deadline.get("met_at"):
            due = datetime.fromisoformat(deadline["due_at"]) + paused_for
            book[name] = {**deadline, "due_at": iso(due)}


def reassess(
    policy: Policy, facts: Mapping[str, str | None], timeline: Iterable[Mapping[str, Any]]
) -> Book:
    """The deadlines a complaint with these facts and this timeline has under `policy`.

    Each limit is chosen by `policy` where the complaint's own events carried the one chosen
    at the time; pauses and extensions are applied as the durations they were.
    """
    book: Book = {}
    accepted_at: datetime | None = None
    for step in timeline:
        event, at = step["event"], datetime.fromisoformat(step["at"])
        if event == "Accepted":
            accepted_at = at
            received = step.get("received_at")
            start(
                book,
                policy.deadlines(
                    facts,
                    accepted_at=at,
                    received_at=datetime.fromisoformat(received) if received else None,
                ),
            )
        elif event == "Assigned" and accepted_at is not None:
            for deadline in policy.deadlines(
                {**facts, "complexity": step["complexity"]},
                accepted_at=accepted_at,
                only=["investigation"],
            ):
                replace(book, deadline, at)
        elif event == "Extended" and step["deadline"] in book:
            due = datetime.fromisoformat(book[step["deadline"]]["due_at"])
            extend(book, step["deadline"], iso(due + timedelta(seconds=step["seconds"])))
        elif event == "ClockResumed":
            shift_paused(book, timedelta(seconds=step["seconds"]))
        elif event == "Escalated":
            start(book, step["deadlines"])
        meet(book, event, at)
    return book
