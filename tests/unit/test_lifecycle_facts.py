"""The lifecycle's facts (shared.domain.lifecycle), written out by hand rather than read back
from its tables, so that a wrong entry there fails here."""

from __future__ import annotations

import pytest

from shared.domain import lifecycle
from shared.domain.codes import Status
from shared.domain.lifecycle import (
    FINAL,
    OPEN,
    Command,
    allows,
    next_steps,
)

S = Status
C = Command


@pytest.mark.parametrize(
    ("status", "command", "allowed"),
    [
        ("accepted", C.REFUSE, True),
        (S.ACCEPTED, C.ASSIGN, True),
        (S.ACCEPTED, C.REPLY, False),
        (S.REFUSED, C.ARCHIVE, True),
        (S.REFUSED, C.ASSIGN, False),
        (S.INVESTIGATING, C.EXTEND, True),
        (S.RESOLUTION_PROPOSED, C.RECORD_FINDINGS, False),
        (S.REPLIED, C.RECORD_CALLBACK, True),
        (S.REPLIED, C.PAUSE_CLOCK, False),
        (S.ESCALATED, C.REVIEW, True),
        (S.CALLBACK_DONE, C.ARCHIVE, True),
        (S.ARCHIVED, C.ARCHIVE, False),
        # A gateway's answer about a message already requested is recorded in every status.
        ("archived", C.RECORD_NOTIFICATION, True),
        (S.REFUSED, C.RECORD_NOTIFICATION, True),
    ],
)
def test_what_a_status_allows(status: Status | str, command: Command, allowed: bool) -> None:
    assert allows(status, command) is allowed


@pytest.mark.parametrize(
    ("command", "statuses"),
    [
        (C.ARCHIVE, {S.REFUSED, S.CALLBACK_DONE}),
        (C.REVIEW, {S.ESCALATED}),
        (C.ASSIGN, {S.ACCEPTED, S.INVESTIGATING}),
        (C.REPLY, {S.INVESTIGATING, S.RESOLUTION_PROPOSED}),
        (
            C.ESCALATE,
            {
                S.ACCEPTED,
                S.REFUSED,
                S.INVESTIGATING,
                S.RESOLUTION_PROPOSED,
                S.REPLIED,
                S.ESCALATED,
                S.CALLBACK_DONE,
            },
        ),
        (C.RECORD_NOTIFICATION, set(Status)),
    ],
)
def test_the_statuses_allowing_a_command(command: Command, statuses: set[Status]) -> None:
    assert {s for s in Status if allows(s, command)} == statuses


def test_refused_and_archived_are_final_and_the_rest_open() -> None:
    assert {S.REFUSED, S.ARCHIVED} == FINAL
    assert {
        S.ACCEPTED,
        S.INVESTIGATING,
        S.RESOLUTION_PROPOSED,
        S.REPLIED,
        S.ESCALATED,
        S.CALLBACK_DONE,
    } == OPEN


def test_what_happens_next_is_told_per_status() -> None:
    assert next_steps("callback_done") == "The complaint can be archived."
    assert next_steps(S.ARCHIVED) == (
        "Archived. A new complaint about the same matter is linked as a repeat."
    )


def test_the_lifecycle_as_it_stands_passes_its_own_check() -> None:
    lifecycle._check()


def test_a_status_without_a_stage_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    stages = {s: stage for s, stage in lifecycle.STAGES.items() if s != S.ARCHIVED}
    monkeypatch.setattr(lifecycle, "STAGES", stages)
    with pytest.raises(RuntimeError) as caught:
        lifecycle._check()
    assert str(caught.value) == "lifecycle: no stage for ['archived']"


def test_the_check_accepts_closing_events_that_are_all_milestones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check asks that closing events be among the milestones, not more (a subset)."""
    monkeypatch.setattr(lifecycle, "CLOSING", lifecycle.MILESTONES)
    lifecycle._check()


def test_a_closing_event_that_meets_nothing_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "CLOSING", frozenset({"Refused", "Withdrawn"}))
    with pytest.raises(RuntimeError) as caught:
        lifecycle._check()
    assert str(caught.value) == "lifecycle: a closing event must be a milestone"


def test_an_open_status_a_review_cannot_return_to_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reopening = {s: o for s, o in lifecycle.REOPENING.items() if s != S.CALLBACK_DONE}
    monkeypatch.setattr(lifecycle, "REOPENING", reopening)
    with pytest.raises(RuntimeError) as caught:
        lifecycle._check()
    assert str(caught.value) == "lifecycle: a review must know what each open status reopens"
