"""The bookkeeping of a complaint's time limits, and their re-assessment under another policy.

A complaint keeps its deadlines as plain dicts by key (they are stored in events and snapshots
as they are). A limit's key is its name the first time it opens and `name.2`, `name.3`, … when
it opens again (a second callback after a second reply), so every limit ever opened stays on
record. The functions here are the only code that changes them, whether the aggregate applies
one of its events or `reassess` replays a complaint's timeline under another policy version. So
a re-analysis under the policy that applied at the time gives exactly the deadlines the
complaint had, and under another policy what the same history would have met. (Two
exceptions: limits counted again when an official holiday schedule replaced an estimate, and
extensions recorded before extensions moved several limits, replay as the policy says.)

A limit is running until it is met (one of its `met_by` events), closed (the complaint was
refused or archived, the status it asked an action of was left, or the same limit opened again:
`closed_at`) or escalated after passing. One that passed unmet stays missed whatever follows.

A timeline is the list of steps that matter to time limits, in event order, each a plain dict
with `event`, `at` (ISO, UTC), `status` and `level` after the event, and where it applies:

- `opening` — the situation entered (shared.domain.lifecycle.Opening): the policy's rules of
  that opening start limits (`Accepted` with the intake facts and `received_at`)
- `complexity` (`Assigned`) — the investigation limit is chosen again for that complexity
- `deadlines` (`Escalated`) — limits that do not come from the policy (a regulator's)
- `new_due_at` (`Extended`) — the limits the policy's extension moves, moved to at least then
- `deadline` (`SupervisorsAlerted`) — the limit that alerted
- `seconds` (`ClockResumed`) — how long the clock stood still
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.codes import DeadlineState, Status
from shared.domain.lifecycle import CLOSING, Opening
from shared.domain.policy import Policy

Book = dict[str, dict[str, Any]]


def iso(value: datetime) -> str:
    """Times are stored in UTC, whatever offset a frontend sent."""
    return value.astimezone(UTC).isoformat()


def is_open(deadline: Mapping[str, Any]) -> bool:
    """Neither met nor closed (it may have passed)."""
    return deadline.get("met_at") is None and deadline.get("closed_at") is None


def is_pending(deadline: Mapping[str, Any]) -> bool:
    """Open, and its passing has not escalated the complaint yet."""
    return is_open(deadline) and not deadline.get("escalated_at")


def state_at(
    due_at: datetime,
    met_at: datetime | None,
    now: datetime,
    *,
    closed_at: datetime | None = None,
    stands_still: bool = False,
) -> DeadlineState:
    """Met if its event came in time, closed if it was closed before it was due, missed if
    either came late or the time is up; running otherwise. A limit whose clock stands still
    (pausable, and paused) is running: it is not due while the clock is paused."""
    if met_at is not None:
        return DeadlineState.MET if met_at <= due_at else DeadlineState.MISSED
    if closed_at is not None:
        return DeadlineState.CLOSED if closed_at <= due_at else DeadlineState.MISSED
    if stands_still:
        return DeadlineState.RUNNING
    return DeadlineState.MISSED if now > due_at else DeadlineState.RUNNING


def state(deadline: Mapping[str, Any], now: datetime, *, paused: bool = False) -> DeadlineState:
    """The state of a stored deadline; `paused`: the complaint's clock is paused."""

    def when(field: str) -> datetime | None:
        value = deadline.get(field)
        return datetime.fromisoformat(value) if value else None

    return state_at(
        datetime.fromisoformat(deadline["due_at"]),
        when("met_at"),
        now,
        closed_at=when("closed_at"),
        stands_still=paused and bool(deadline.get("pausable")),
    )


def is_regulators(deadline: Mapping[str, Any]) -> bool:
    """A deadline the regulator set with an appeal, not the policy."""
    return deadline.get("unit") == "regulator"


def without_investigation(opened: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a review that upholds findings already recorded opens: not a new investigation
    (no findings will come to meet it), only what follows the findings."""
    return [d for d in opened if "FindingsRecorded" not in d["met_by"]]


def key_for(book: Book, name: str) -> str:
    """`name` the first time, then `name.2`, `name.3`, …"""
    count = sum(1 for d in book.values() if d["name"] == name)
    return name if count == 0 else f"{name}.{count + 1}"


def open_limit(book: Book, deadline: Mapping[str, Any], at: datetime, event: str) -> str:
    """Start a limit; the same limit still open is closed (it opened again). A regulator's
    deadline is its own promise: a second appeal's runs beside the first's."""
    for key, old in book.items():
        if old["name"] == deadline["name"] and is_open(old) and not is_regulators(old):
            book[key] = {**old, "closed_at": iso(at), "closed_by": event}
    key = key_for(book, deadline["name"])
    book[key] = {**deadline, "key": key, "met_at": None}
    return key


def start(book: Book, deadlines: Iterable[Mapping[str, Any]], at: datetime, event: str) -> None:
    for deadline in deadlines:
        open_limit(book, deadline, at, event)


def replace(book: Book, deadline: dict[str, Any], at: datetime) -> None:
    """A new limit replaces an open one of its name (an investigation chosen again for another
    complexity). Time the clock stood paused still counts, and an extension promised to the
    customer is not taken back: the later due time stands. If the old one had passed and
    escalated and the new one has passed too, that escalation still stands (no second one)."""
    key = deadline["name"]
    old = book.get(key)
    if old is not None and not is_open(old):
        return
    old = old or {}
    new = {**deadline, "key": key, "met_at": None}
    if old.get("paused_seconds") and new.get("pausable"):
        # The clock stood still before the limit was chosen again: it stood for this one too.
        new["paused_seconds"] = old["paused_seconds"]
        stood = timedelta(seconds=old["paused_seconds"])
        new["due_at"] = iso(datetime.fromisoformat(new["due_at"]) + stood)
    if old.get("original_due_at"):
        new["original_due_at"] = old["original_due_at"]
        new["due_at"] = max(old["due_at"], deadline["due_at"], key=datetime.fromisoformat)
    if old.get("escalated_at") and datetime.fromisoformat(new["due_at"]) < at:
        new["escalated_at"] = old["escalated_at"]
    book[key] = new


def meet(book: Book, event: str, at: datetime) -> None:
    for key, deadline in book.items():
        if event in deadline["met_by"] and is_open(deadline):
            book[key] = {**deadline, "met_at": iso(at)}


def close(book: Book, at: datetime, event: str, *, now_in: Status | None = None) -> None:
    """Close the open limits: all of them, or with `now_in` (the status the complaint is in
    after the event) those bound to another status: the complaint left the step whose action
    they asked for, so that action is no longer the next one."""
    for key, deadline in book.items():
        if not is_open(deadline):
            continue
        if now_in is not None:
            bound = deadline.get("bound_to")
            if bound is None or bound == now_in:
                continue
        book[key] = {**deadline, "closed_at": iso(at), "closed_by": event}


def apply(book: Book, step: Mapping[str, Any], opened: Iterable[Mapping[str, Any]]) -> None:
    """What one step of the timeline does to the limits: it starts those it opens, meets those
    it is named for (an acceptance meets the limit to accept), and closes those it ends."""
    event, at = step["event"], datetime.fromisoformat(step["at"])
    start(book, opened, at, event)
    meet(book, event, at)
    if event in CLOSING:
        close(book, at, event)
    elif step.get("status"):
        close(book, at, event, now_in=Status(step["status"]))


def extend(book: Book, names: Iterable[str], new_due_at: str, at: datetime) -> list[str]:
    """Move the open limits of these names that have not passed to at least `new_due_at`; the
    first due time stays on record as `original_due_at`. Returns the keys moved."""
    wanted, new_due = set(names), datetime.fromisoformat(new_due_at)
    moved = []
    for key, deadline in book.items():
        due = datetime.fromisoformat(deadline["due_at"])
        if deadline["name"] in wanted and is_open(deadline) and at <= due < new_due:
            book[key] = {
                **deadline,
                "due_at": iso(new_due),
                "original_due_at": deadline.get("original_due_at") or deadline["due_at"],
            }
            moved.append(key)
    return moved


def mark_escalated(book: Book, key: str, at: datetime) -> None:
    book[key] = {**book[key], "escalated_at": iso(at)}


def shift_paused(book: Book, paused_at: datetime, resumed_at: datetime) -> None:
    """The pausable limits still open move on by the time their clock stood still: from the
    pause, or from when they started if they started during it."""
    for key, deadline in book.items():
        if deadline["pausable"] and is_open(deadline):
            stood = resumed_at - max(paused_at, datetime.fromisoformat(deadline["starts_at"]))
            if stood <= timedelta(0):
                continue
            due = datetime.fromisoformat(deadline["due_at"]) + stood
            paused = deadline.get("paused_seconds", 0) + stood.total_seconds()
            book[key] = {**deadline, "due_at": iso(due), "paused_seconds": paused}


def passed(book: Book, at: datetime, *, paused: bool = False) -> list[str]:
    """The limits that passed before `at` and have not escalated the complaint yet (while the
    clock is `paused`, a pausable limit stands still: it has not passed)."""
    return [
        key
        for key, d in book.items()
        if is_pending(d)
        and datetime.fromisoformat(d["due_at"]) < at
        and not (paused and d["pausable"])
    ]


def openings(
    policy: Policy, facts: Mapping[str, str | None], step: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The limits `policy` starts at this step of a timeline (for `reassess`; the aggregate
    stores the ones it started in its events)."""
    at = datetime.fromisoformat(step["at"])
    opening = step.get("opening")
    found: list[dict[str, Any]] = list(step.get("deadlines") or [])
    if opening is not None:
        received = step.get("received_at")
        opened = policy.deadlines(
            {**facts, "level": step.get("level")},
            accepted_at=at,
            received_at=datetime.fromisoformat(received) if received else None,
            opening=Opening(opening),
        )
        found += without_investigation(opened) if step.get("findings_kept") else opened
    return found


def reassess(
    policy: Policy, facts: Mapping[str, str | None], timeline: Iterable[Mapping[str, Any]]
) -> Book:
    """The deadlines a complaint with these facts and this timeline has under `policy`.

    Each limit is chosen by `policy` where the complaint's own events carried the one chosen
    at the time; pauses and extensions are applied as the durations they were.
    """
    book: Book = {}
    accepted_at: datetime | None = None
    received_at: datetime | None = None
    for step in timeline:
        event, at = step["event"], datetime.fromisoformat(step["at"])
        if event == "Accepted":
            accepted_at = at
            received = step.get("received_at")
            received_at = datetime.fromisoformat(received) if received else None
        elif event == "Assigned" and accepted_at is not None:
            for deadline in policy.deadlines(
                {**facts, "complexity": step["complexity"], "level": step.get("level")},
                accepted_at=accepted_at,
                received_at=received_at,
                only=policy.selecting_on("complexity"),
            ):
                replace(book, deadline, at)
        elif event == "Extended":
            extend(book, policy.document.extension.moves, step["new_due_at"], at)
        elif event == "ClockResumed":
            shift_paused(book, at - timedelta(seconds=step["seconds"]), at)
        elif event == "SupervisorsAlerted" and step["deadline"] in book:
            missed = book[step["deadline"]]
            mark_escalated(book, step["deadline"], at)
            apply(book, step, [policy.alert_follow_up(missed, at)])
            continue
        apply(book, step, openings(policy, facts, step))
    return book
