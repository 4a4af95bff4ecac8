"""Edges of the limits' bookkeeping and of the policy, each expectation written out by hand:
pauses shifting several limits, what "passed" means while the clock stands, what a review that
keeps the findings opens, the calendar of a headquarters alert across New Year, and the
limitation period counted in Beijing's months.

No `server_in_beijing` here: these run on the machine's own zone (UTC on CI), where a
conversion forgotten to Beijing time shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain import deadlines as book
from shared.domain.policy import DEFAULT_POLICY_PATH, Policy, facts_of
from tests.unit.test_book import limit

POLICY = Policy.load()
PAUSED = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
RESUMED = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)


def test_a_pause_moves_every_pausable_limit_that_ran_through_it() -> None:
    limits = {
        # opened when the clock resumed: it never stood still
        "callback": limit(
            "callback", "2026-11-25T05:00:00+00:00", pausable=True, starts_at=RESUMED.isoformat()
        ),
        "investigation": limit(
            "investigation",
            "2026-11-26T02:00:00+00:00",
            pausable=True,
            starts_at="2026-11-23T02:00:00+00:00",
            paused_seconds=600.0,
        ),
        "reply": limit("reply", "2026-11-25T15:59:59+00:00", starts_at="2026-11-23T02:00:00"),
    }
    book.shift_paused(limits, PAUSED, RESUMED)
    assert limits["callback"] == limit(
        "callback", "2026-11-25T05:00:00+00:00", pausable=True, starts_at=RESUMED.isoformat()
    )
    assert (limits["investigation"]["due_at"], limits["investigation"]["paused_seconds"]) == (
        "2026-11-26T04:00:00+00:00",
        7800.0,
    )
    assert limits["reply"]["due_at"] == "2026-11-25T15:59:59+00:00"


def test_passed_counts_pausable_limits_unless_the_clock_stands() -> None:
    at = datetime(2026, 11, 27, tzinfo=UTC)
    limits = {
        "investigation": limit("investigation", "2026-11-26T02:00:00+00:00", pausable=True),
        "reply": limit("reply", "2026-11-25T15:59:59+00:00"),
    }
    assert book.passed(limits, at) == ["investigation", "reply"]
    assert book.passed(limits, at, paused=True) == ["reply"]


def test_a_review_that_keeps_the_findings_opens_no_new_investigation() -> None:
    facts = facts_of(
        channel="hotline", business_type="fixed_line", category="billing", vip_tier=None, area=None
    )
    step = {"at": "2026-11-23T02:00:00+00:00", "opening": "reopened", "level": "provincial"}
    names = [d["name"] for d in book.openings(POLICY, facts, step)]
    kept = [d["name"] for d in book.openings(POLICY, facts, {**step, "findings_kept": True})]
    assert "reinvestigation" in names
    assert kept == [n for n in names if n != "reinvestigation"]
    assert kept


def test_an_alert_over_new_year_is_counted_on_the_estimated_calendar_in_working_days_only() -> None:
    missed = {"name": "reply", "key": "reply", "met_by": ["Replied"], "pausable": False}
    new_years_eve = datetime(2026, 12, 31, 10, 0, tzinfo=UTC)  # 18:00 in Beijing
    follow_up = POLICY.alert_follow_up(missed, new_years_eve)
    assert follow_up["calendar"] == "estimated"  # one working day: into 2027
    hours = Policy.from_toml(
        DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace(
            'alert_repeat = { amount = 1, unit = "working_days" }',
            'alert_repeat = { amount = 24, unit = "hours" }',
        )
    )
    follow_up = hours.alert_follow_up(missed, new_years_eve)
    assert (follow_up["due_at"], follow_up["calendar"]) == ("2027-01-01T10:00:00+00:00", "official")
    still_2026 = POLICY.alert_follow_up(missed, datetime(2026, 12, 1, 2, 0, tzinfo=UTC))
    assert still_2026["calendar"] == "official"


def test_the_limitation_period_is_counted_in_beijing_months() -> None:
    """On 31 July in Beijing (still 30 July in UTC) a fee dispute is time-barred if it
    happened before 28 February, 04:00 Beijing time: five months back, clipped to February's
    last day. In UTC the same count would end a day later."""
    now = datetime(2026, 7, 30, 20, 0, tzinfo=UTC)  # 31 July 04:00 Beijing
    assert not POLICY.is_time_barred(
        "billing", datetime(2026, 2, 28, 10, 0, tzinfo=UTC), now
    )  # 28 Feb 18:00 Beijing: within the five months
    assert POLICY.is_time_barred("billing", datetime(2026, 2, 27, 19, 59, tzinfo=UTC), now)


def test_a_count_ending_in_an_estimated_year_is_estimated() -> None:
    """17:00 UTC on 31 December 2026 is already 1 January 2027 in Beijing."""
    start = datetime(2026, 12, 31, 15, 0, tzinfo=UTC)
    assert POLICY.calendar.counted(start, start + timedelta(hours=2)).value == "estimated"
    assert POLICY.calendar.counted(start, start + timedelta(minutes=59)).value == "official"


def test_a_step_without_an_opening_opens_only_what_it_carries() -> None:
    facts = facts_of(
        channel="hotline", business_type="fixed_line", category="billing", vip_tier=None, area=None
    )
    carried = [{"name": "regulator_appeal"}]
    step = {"at": "2026-11-23T02:00:00+00:00", "deadlines": carried}
    assert book.openings(POLICY, facts, step) == carried
