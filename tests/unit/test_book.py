"""The bookkeeping of time limits (shared.domain.deadlines), one rule at a time.

Every expected time is written out by hand. NOW is Monday 23 Nov 2026, 10:00 in Beijing
(02:00 UTC); a working day ends at 23:59:59 Beijing time, 15:59:59 UTC. November and December
2026 have no public holiday in China, so working days there are Monday to Friday.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.domain import deadlines as book
from shared.domain.codes import DeadlineState, Status

pytestmark = pytest.mark.usefixtures("server_in_beijing")

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
BEIJING = timezone(timedelta(hours=8))
US = timedelta(microseconds=1)


def limit(name: str, due_at: str, **fields: Any) -> dict[str, Any]:
    """A stored limit as the policy makes them, due at `due_at` (UTC text)."""
    return {
        "name": name,
        "key": fields.pop("key", name),
        "due_at": due_at,
        "met_by": fields.pop("met_by", ["Replied"]),
        "pausable": fields.pop("pausable", False),
        "bound_to": fields.pop("bound_to", None),
        "met_at": None,
        **fields,
    }


# --------------------------------------------------------------------- states at the due instant

DUE = datetime(2026, 11, 24, 15, 59, 59, tzinfo=UTC)  # the end of Tuesday 24 Nov in Beijing


@pytest.mark.parametrize(
    ("met_at", "closed_at", "now", "expected"),
    [
        (DUE, None, DUE + timedelta(days=9), DeadlineState.MET),  # met at the very instant
        (DUE + US, None, DUE + US, DeadlineState.MISSED),  # one microsecond late
        (DUE - timedelta(hours=5), None, DUE + timedelta(days=9), DeadlineState.MET),
        (None, DUE, DUE + timedelta(days=9), DeadlineState.CLOSED),  # closed at the instant
        (None, DUE + US, DUE + timedelta(days=9), DeadlineState.MISSED),  # closed too late
        (None, None, DUE, DeadlineState.RUNNING),  # due now: still running
        (None, None, DUE + US, DeadlineState.MISSED),  # a microsecond after: missed
        (None, None, DUE - timedelta(days=1), DeadlineState.RUNNING),
    ],
)
def test_the_state_at_and_around_the_due_instant(
    met_at: datetime | None, closed_at: datetime | None, now: datetime, expected: DeadlineState
) -> None:
    assert book.state_at(DUE, met_at, now, closed_at=closed_at) is expected


def test_a_clock_standing_still_keeps_a_passed_limit_running() -> None:
    late = DUE + timedelta(days=3)
    assert book.state_at(DUE, None, late, stands_still=True) is DeadlineState.RUNNING
    assert book.state_at(DUE, None, late) is DeadlineState.MISSED  # runs unless told otherwise
    # What came in stays what it was, paused or not.
    assert book.state_at(DUE, DUE + US, late, stands_still=True) is DeadlineState.MISSED
    assert book.state_at(DUE, None, late, closed_at=DUE, stands_still=True) is DeadlineState.CLOSED


def test_the_state_of_a_stored_limit() -> None:
    pausable = limit("reply", "2026-11-24T15:59:59+00:00", pausable=True)
    fixed = limit("operator_answer", "2026-11-24T15:59:59+00:00")
    late = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    assert book.state(pausable, late) is DeadlineState.MISSED  # the clock runs by default
    assert book.state(pausable, late, paused=True) is DeadlineState.RUNNING
    assert book.state(fixed, late, paused=True) is DeadlineState.MISSED  # not pausable
    assert book.state(pausable, DUE) is DeadlineState.RUNNING
    met = {**pausable, "met_at": "2026-11-24T23:59:59+08:00"}  # the due instant, other offset
    assert book.state(met, late) is DeadlineState.MET
    closed = {**fixed, "closed_at": "2026-11-24T16:00:00+00:00"}
    assert book.state(closed, late) is DeadlineState.MISSED
    closed_in_time = {**fixed, "closed_at": "2026-11-24T10:00:00+00:00"}
    assert book.state(closed_in_time, late) is DeadlineState.CLOSED


def test_open_and_pending() -> None:
    running = limit("reply", "2026-11-24T15:59:59+00:00")
    assert book.is_open(running) and book.is_pending(running)
    assert not book.is_open({**running, "met_at": "2026-11-24T01:00:00+00:00"})
    assert not book.is_open({**running, "closed_at": "2026-11-24T01:00:00+00:00"})
    escalated = {**running, "escalated_at": "2026-11-25T01:00:00+00:00"}
    assert book.is_open(escalated) and not book.is_pending(escalated)
    assert not book.is_pending({**running, "met_at": "2026-11-24T01:00:00+00:00"})
    assert book.is_open({"name": "reply", "due_at": "2026-11-24T15:59:59+00:00"})  # no fields yet


def test_times_are_stored_in_utc() -> None:
    assert book.iso(datetime(2026, 11, 23, 10, 0, tzinfo=BEIJING)) == "2026-11-23T02:00:00+00:00"


# ------------------------------------------------------------------------- keys and openings


def test_a_limit_that_opens_again_gets_the_next_key() -> None:
    kept: book.Book = {}
    assert book.key_for(kept, "callback") == "callback"
    kept["reply"] = limit("reply", "2026-11-26T15:59:59+00:00")
    assert book.key_for(kept, "callback") == "callback"  # other names do not count
    kept["callback"] = limit("callback", "2026-11-25T15:59:59+00:00", met_at="x")
    assert book.key_for(kept, "callback") == "callback.2"
    kept["callback.2"] = limit("callback", "2026-11-27T15:59:59+00:00", key="callback.2")
    assert book.key_for(kept, "callback") == "callback.3"


def test_opening_a_limit_again_closes_the_one_still_open() -> None:
    first = limit("callback", "2026-11-25T15:59:59+00:00", bound_to="replied")
    kept: book.Book = {
        "callback": first,
        "reply": limit("reply", "2026-11-26T15:59:59+00:00"),
    }
    again = {k: v for k, v in first.items() if k not in ("key", "met_at")}
    again["due_at"] = "2026-11-27T15:59:59+00:00"
    opened_at = datetime(2026, 11, 25, 12, 0, tzinfo=BEIJING)  # 04:00 UTC
    assert book.open_limit(kept, again, opened_at, "Reviewed") == "callback.2"
    assert kept["callback"] == {
        **first,
        "closed_at": "2026-11-25T04:00:00+00:00",
        "closed_by": "Reviewed",
    }
    assert kept["callback.2"] == {**again, "key": "callback.2", "met_at": None}
    assert "closed_at" not in kept["reply"]  # another limit: untouched


def test_opening_a_limit_again_leaves_a_met_one_met() -> None:
    met = limit("callback", "2026-11-25T15:59:59+00:00", met_at="2026-11-24T03:00:00+00:00")
    kept: book.Book = {"callback": met}
    book.start(
        kept,
        [
            {"name": "callback", "due_at": "2026-11-27T15:59:59+00:00", "met_by": ["X"]},
            {"name": "archive", "due_at": "2026-11-30T15:59:59+00:00", "met_by": ["Archived"]},
        ],
        NOW,
        "Reviewed",
    )
    assert kept["callback"] == met
    assert sorted(kept) == ["archive", "callback", "callback.2"]
    assert kept["archive"]["key"] == "archive" and kept["archive"]["met_at"] is None


# ------------------------------------------------------------------------- choosing again


def test_a_limit_chosen_again_replaces_the_open_one() -> None:
    kept: book.Book = {"investigation": limit("investigation", "2026-11-26T02:00:00+00:00")}
    chosen = {"name": "investigation", "due_at": "2026-11-25T15:59:59+00:00", "amount": 2}
    book.replace(kept, chosen, NOW)
    # Earlier than before, and nothing promised to the customer: the new one stands as it is.
    assert kept["investigation"] == {**chosen, "key": "investigation", "met_at": None}


def test_a_limit_chosen_for_the_first_time_is_added() -> None:
    kept: book.Book = {}
    book.replace(kept, {"name": "resolution", "due_at": "2026-11-30T15:59:59+00:00"}, NOW)
    assert kept == {
        "resolution": {
            "name": "resolution",
            "due_at": "2026-11-30T15:59:59+00:00",
            "key": "resolution",
            "met_at": None,
        }
    }


@pytest.mark.parametrize(
    "done", [{"met_at": "2026-11-24T01:00:00+00:00"}, {"closed_at": "2026-11-24T01:00:00+00:00"}]
)
def test_a_met_or_closed_limit_is_not_chosen_again(done: dict[str, str]) -> None:
    old = limit("investigation", "2026-11-26T02:00:00+00:00", **done)
    kept: book.Book = {"investigation": old}
    book.replace(kept, {"name": "investigation", "due_at": "2026-11-30T15:59:59+00:00"}, NOW)
    assert kept == {"investigation": old}


def test_an_extended_limit_chosen_again_keeps_the_later_promise() -> None:
    extended = limit(
        "reply",
        "2026-12-03T10:00:00+00:00",
        original_due_at="2026-12-01T15:59:59+00:00",
    )
    kept: book.Book = {"reply": extended}
    # Chosen again due Thursday 3 Dec 17:00 in Beijing, 09:00 UTC: an hour before the promise.
    # The times are compared, not their text ("17:00+08:00" sorts after "10:00+00:00").
    book.replace(kept, {"name": "reply", "due_at": "2026-12-03T17:00:00+08:00"}, NOW)
    assert kept["reply"]["due_at"] == "2026-12-03T10:00:00+00:00"
    assert kept["reply"]["original_due_at"] == "2026-12-01T15:59:59+00:00"
    # Chosen again later than the promise: the later one.
    book.replace(kept, {"name": "reply", "due_at": "2026-12-04T15:59:59+00:00"}, NOW)
    assert kept["reply"]["due_at"] == "2026-12-04T15:59:59+00:00"
    assert kept["reply"]["original_due_at"] == "2026-12-01T15:59:59+00:00"


def test_an_escalation_stands_only_if_the_new_limit_has_passed_too() -> None:
    escalated = limit(
        "investigation", "2026-11-26T02:00:00+00:00", escalated_at="2026-11-26T03:00:00+00:00"
    )
    at = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # Friday 27 Nov, 10:00 in Beijing
    passed: book.Book = {"investigation": dict(escalated)}
    book.replace(passed, {"name": "investigation", "due_at": "2026-11-27T01:59:59+00:00"}, at)
    assert passed["investigation"]["escalated_at"] == "2026-11-26T03:00:00+00:00"
    due_now: book.Book = {"investigation": dict(escalated)}
    book.replace(due_now, {"name": "investigation", "due_at": "2026-11-27T02:00:00+00:00"}, at)
    assert "escalated_at" not in due_now["investigation"]  # due this instant: not passed
    later: book.Book = {"investigation": dict(escalated)}
    book.replace(later, {"name": "investigation", "due_at": "2026-11-30T15:59:59+00:00"}, at)
    assert "escalated_at" not in later["investigation"]


# -------------------------------------------------------------------- meeting and closing


def test_an_event_meets_the_open_limits_it_is_named_for() -> None:
    kept: book.Book = {
        "reply": limit("reply", "2026-11-26T15:59:59+00:00", met_by=["Replied"]),
        "resolution": limit("resolution", "2026-11-30T15:59:59+00:00", met_by=["Replied"]),
        "investigation": limit("investigation", "2026-11-26T02:00:00+00:00", met_by=["Findings"]),
        "callback": limit(
            "callback", "2026-11-20T15:59:59+00:00", closed_at="2026-11-19T00:00:00+00:00"
        ),
        "answer": limit("answer", "2026-12-08T02:00:00+00:00", met_at="2026-11-24T00:00:00+00:00"),
    }
    kept["callback"]["met_by"] = ["Replied"]
    kept["answer"]["met_by"] = ["Replied"]
    book.meet(kept, "Replied", datetime(2026, 11, 25, 18, 30, tzinfo=BEIJING))
    assert kept["reply"]["met_at"] == "2026-11-25T10:30:00+00:00"
    assert kept["resolution"]["met_at"] == "2026-11-25T10:30:00+00:00"
    assert kept["investigation"]["met_at"] is None  # not its event
    assert kept["callback"]["met_at"] is None  # closed before: stays closed
    assert kept["answer"]["met_at"] == "2026-11-24T00:00:00+00:00"  # met once, when it was


def _running_book() -> book.Book:
    return {
        "reply": limit("reply", "2026-11-26T15:59:59+00:00"),
        "callback": limit("callback", "2026-11-25T15:59:59+00:00", bound_to="replied"),
        "escalation_review": limit(
            "escalation_review", "2026-11-26T15:59:59+00:00", bound_to="escalated"
        ),
        "investigation": limit(
            "investigation", "2026-11-26T02:00:00+00:00", met_at="2026-11-24T02:00:00+00:00"
        ),
        "acceptance": limit(
            "acceptance",
            "2026-11-22T01:00:00+00:00",
            closed_at="2026-11-23T02:00:00+00:00",
            closed_by="Escalated",
        ),
    }


@pytest.mark.parametrize("event", ["Refused", "Archived"])
def test_refusal_and_archive_close_every_running_limit(event: str) -> None:
    kept = _running_book()
    at = datetime(2026, 11, 24, 12, 0, tzinfo=BEIJING)  # Tuesday 24 Nov, 04:00 UTC
    book.apply(kept, {"event": event, "at": book.iso(at), "status": "refused"}, [])
    for key in ("reply", "callback", "escalation_review"):
        assert kept[key]["closed_at"] == "2026-11-24T04:00:00+00:00", key
        assert kept[key]["closed_by"] == event, key
        assert book.state(kept[key], at + timedelta(days=30)) is DeadlineState.CLOSED, key
    # What was met or closed before keeps its record.
    assert "closed_at" not in kept["investigation"]
    assert kept["acceptance"]["closed_by"] == "Escalated"


def test_closing_leaves_a_passed_limit_missed() -> None:
    kept = {"reply": limit("reply", "2026-11-26T15:59:59+00:00")}
    at = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    book.close(kept, at, "Archived")
    assert kept["reply"]["closed_at"] == "2026-11-27T02:00:00+00:00"
    assert book.state(kept["reply"], at) is DeadlineState.MISSED


def test_leaving_a_status_closes_only_the_limits_bound_to_another() -> None:
    kept = _running_book()
    at = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
    # Escalated: the complaint is in `escalated` now and has left `replied`.
    book.close(kept, at, "Escalated", now_in=Status.ESCALATED)
    assert kept["callback"]["closed_at"] == "2026-11-24T04:00:00+00:00"
    assert kept["callback"]["closed_by"] == "Escalated"
    assert "closed_at" not in kept["escalation_review"]  # bound to where it is now
    assert "closed_at" not in kept["reply"]  # a promise, bound to nothing


def test_a_step_into_a_status_closes_what_it_left_and_one_without_status_nothing() -> None:
    kept = _running_book()
    book.apply(kept, {"event": "ClockResumed", "at": "2026-11-24T04:00:00+00:00"}, [])
    assert kept == _running_book()
    book.apply(
        kept, {"event": "Reviewed", "at": "2026-11-24T04:00:00+00:00", "status": "replied"}, []
    )
    assert kept["escalation_review"]["closed_by"] == "Reviewed"
    assert "closed_at" not in kept["callback"] and "closed_at" not in kept["reply"]


def test_a_step_starts_what_it_opens_and_meets_what_it_is_named_for() -> None:
    kept: book.Book = {"reply": limit("reply", "2026-11-26T15:59:59+00:00")}
    opened = [
        {
            "name": "acceptance",
            "due_at": "2026-11-22T01:00:00+00:00",
            "met_by": ["Accepted"],
            "bound_to": None,
        },
        {
            "name": "callback",
            "due_at": "2026-11-25T15:59:59+00:00",
            "met_by": ["CallbackRecorded"],
            "bound_to": None,
        },
    ]
    step = {"event": "Accepted", "at": "2026-11-23T02:00:00+00:00", "status": "accepted"}
    book.apply(kept, step, opened)
    # An acceptance meets the limit to accept, opened by the same step (late, here).
    assert kept["acceptance"]["met_at"] == "2026-11-23T02:00:00+00:00"
    assert book.state(kept["acceptance"], NOW) is DeadlineState.MISSED
    assert kept["callback"]["met_at"] is None
    assert kept["reply"]["met_at"] is None


# ------------------------------------------------------------------ extensions and pauses


def test_an_extension_moves_the_named_open_limits_not_yet_passed() -> None:
    kept: book.Book = {
        "investigation": limit("investigation", "2026-11-30T15:59:59+00:00"),
        "reply": limit("reply", "2026-12-01T15:59:59+00:00"),
        "resolution": limit("resolution", "2026-12-03T10:00:00+00:00"),  # already that late
        "callback": limit("callback", "2026-11-25T15:59:59+00:00"),  # not named
        "repair": limit("repair", "2026-11-24T02:00:00+00:00"),  # named, but passed
        "installation": limit(
            "installation", "2026-11-26T02:00:00+00:00", met_at="2026-11-24T00:00:00+00:00"
        ),
    }
    at = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    names = ["investigation", "reply", "resolution", "repair", "installation"]
    moved = book.extend(kept, names, "2026-12-03T10:00:00+00:00", at)
    assert moved == ["investigation", "reply"]
    assert kept["investigation"]["due_at"] == "2026-12-03T10:00:00+00:00"
    assert kept["investigation"]["original_due_at"] == "2026-11-30T15:59:59+00:00"
    assert kept["reply"]["original_due_at"] == "2026-12-01T15:59:59+00:00"
    assert "original_due_at" not in kept["resolution"]  # due exactly then: not moved
    assert kept["callback"]["due_at"] == "2026-11-25T15:59:59+00:00"
    assert kept["repair"]["due_at"] == "2026-11-24T02:00:00+00:00"
    assert kept["installation"]["due_at"] == "2026-11-26T02:00:00+00:00"


def test_an_extension_at_the_due_instant_still_moves_the_limit() -> None:
    kept = {"investigation": limit("investigation", "2026-11-30T15:59:59+00:00")}
    at = datetime(2026, 11, 30, 15, 59, 59, tzinfo=UTC)
    assert book.extend(kept, ["investigation"], "2026-12-03T10:00:00+08:00", at) == [
        "investigation"
    ]
    assert kept["investigation"]["due_at"] == "2026-12-03T02:00:00+00:00"  # stored in UTC
    assert book.extend(kept, ["investigation"], "2026-12-04T10:00:00+00:00", at + US) == [
        "investigation"
    ]
    late = {"investigation": limit("investigation", "2026-11-30T15:59:59+00:00")}
    assert book.extend(late, ["investigation"], "2026-12-03T10:00:00+00:00", at + US) == []


def test_a_second_extension_keeps_the_first_due_time_on_record() -> None:
    kept = {"reply": limit("reply", "2026-12-01T15:59:59+00:00")}
    book.extend(kept, ["reply"], "2026-12-03T10:00:00+00:00", NOW)
    book.extend(kept, ["reply"], "2026-12-07T10:00:00+00:00", NOW)
    assert kept["reply"]["due_at"] == "2026-12-07T10:00:00+00:00"
    assert kept["reply"]["original_due_at"] == "2026-12-01T15:59:59+00:00"


def test_a_resumed_clock_moves_the_open_pausable_limits_by_the_pause() -> None:
    # Paused at NOW (Mon 23 Nov 02:00 UTC), resumed 26 h 30 min later (Tue 04:30 UTC).
    before = "2026-11-22T02:00:00+00:00"
    kept: book.Book = {
        "investigation": limit(
            "investigation", "2026-11-26T02:00:00+00:00", pausable=True, starts_at=before
        ),
        "operator_answer": limit("operator_answer", "2026-12-08T02:00:00+00:00", starts_at=before),
        "reply": limit(
            "reply",
            "2026-11-26T15:59:59+00:00",
            pausable=True,
            met_at="2026-11-24T00:00:00+00:00",
            starts_at=before,
        ),
        "resolution": limit(
            "resolution",
            "2026-11-30T15:59:59+00:00",
            pausable=True,
            closed_at="2026-11-24T00:00:00+00:00",
            starts_at=before,
        ),
        # Opened during the pause (an escalation at Tue 00:00 UTC): it stood still from then,
        # 4 h 30 min, not for the whole pause.
        "escalation_review": limit(
            "escalation_review",
            "2026-11-26T15:59:59+00:00",
            pausable=True,
            starts_at="2026-11-24T00:00:00+00:00",
        ),
    }
    book.shift_paused(kept, NOW, NOW + timedelta(hours=26, minutes=30))
    assert kept["investigation"]["due_at"] == "2026-11-27T04:30:00+00:00"
    assert kept["investigation"]["paused_seconds"] == 26.5 * 3600
    assert kept["operator_answer"]["due_at"] == "2026-12-08T02:00:00+00:00"
    assert kept["reply"]["due_at"] == "2026-11-26T15:59:59+00:00"  # met: stays
    assert kept["resolution"]["due_at"] == "2026-11-30T15:59:59+00:00"  # closed: stays
    assert kept["escalation_review"]["due_at"] == "2026-11-26T20:29:59+00:00"


def test_passed_lists_the_pending_limits_due_before_the_moment() -> None:
    kept: book.Book = {
        "reply": limit("reply", "2026-11-26T15:59:59+00:00"),
        "investigation": limit("investigation", "2026-11-26T02:00:00+00:00"),
        "repair": limit("repair", "2026-11-24T02:00:00+00:00", escalated_at="x"),
        "installation": limit(
            "installation", "2026-11-24T02:00:00+00:00", met_at="2026-11-25T00:00:00+00:00"
        ),
        "callback": limit("callback", "2026-11-27T15:59:59+00:00"),
    }
    at = datetime(2026, 11, 26, 15, 59, 59, tzinfo=UTC)  # reply's due instant
    assert book.passed(kept, at) == ["investigation"]
    assert book.passed(kept, at + US) == ["reply", "investigation"]
    book.mark_escalated(kept, "investigation", datetime(2026, 11, 26, 17, tzinfo=BEIJING))
    assert kept["investigation"]["escalated_at"] == "2026-11-26T09:00:00+00:00"
    assert kept["investigation"]["due_at"] == "2026-11-26T02:00:00+00:00"
    assert book.passed(kept, at + US) == ["reply"]
