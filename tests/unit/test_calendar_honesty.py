"""Calendar honesty: a year the holiday data only estimates is marked, and a policy that brings
its official schedule counts the running limits again, on record.

The holidays package knows China's official schedules (with the adjusted working weekends)
up to 2026; for 2027 it only estimates. NOW2 is Thursday 31 Dec 2026, 10:00 in Beijing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.codes import Complexity
from shared.domain.complaint import Complaint
from shared.domain.errors import InvalidCommand
from shared.domain.notices import text
from shared.domain.policy import DEFAULT_POLICY_PATH, Policy, facts_of
from tests.unit.test_lifecycle_invariant import as_
from tests.unit.test_transitions import POLICY, new_complaint

NOW2 = datetime(2026, 12, 31, 2, 0, tzinfo=UTC)

#: The policy in force, as a new version that brings 2027's official schedule: here it says
#: Monday 4 Jan 2027 is a day off (the real notice may say otherwise; this is a test).
OFFICIAL_2027 = Policy.from_toml(
    DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    .replace('version = "2026.2"', 'version = "2027.1"')
    .replace(
        "extra_holidays = []     # e.g. 2026-12-31, a company holiday",
        "extra_holidays = [2027-01-04]\nofficial_years = [2027]",
    )
)


def at(hours: float) -> datetime:
    return NOW2 + timedelta(hours=hours)


def test_a_year_the_data_only_estimates_is_marked() -> None:
    assert POLICY.calendar.official_through == 2026
    assert not POLICY.calendar.is_estimated(2026)
    assert POLICY.calendar.is_estimated(2027)
    assert not OFFICIAL_2027.calendar.is_estimated(2027)
    assert OFFICIAL_2027.calendar.is_estimated(2028)


def test_deadlines_say_which_calendar_counted_them() -> None:
    facts = facts_of(
        channel="hotline", business_type="fixed_line", category="billing", vip_tier=None, area=None
    )
    late = {d["name"]: d for d in POLICY.deadlines(facts, accepted_at=NOW2)}
    # Working days into 2027: estimated. Hours and calendar days: no holiday counts.
    assert late["reply"]["calendar"] == "estimated"
    assert late["resolution"]["calendar"] == "estimated"
    assert late["investigation"]["calendar"] == "official"
    assert late["operator_answer"]["calendar"] == "official"
    early = {d["name"]: d for d in POLICY.deadlines(facts, accepted_at=NOW2 - timedelta(days=30))}
    assert early["reply"]["calendar"] == "official"  # 1 Dec: all within 2026


def accepted_on_new_years_eve() -> Complaint:
    return new_complaint(at=NOW2, business_type="fixed_line")


def test_the_official_schedule_counts_the_running_limits_again_on_record() -> None:
    c = accepted_on_new_years_eve()
    # 3 working days, estimated: Fri 1 Jan off, then Mon 4, Tue 5, Wed 6.
    assert c.deadlines["reply"]["due_at"] == "2027-01-06T15:59:59+00:00"
    c.pause_clock("waiting for the bill", as_("supervisor", at(1)))
    c.resume_clock(as_("supervisor", at(3)))  # two hours paused: pausable limits move on
    assert c.deadlines["reply"]["due_at"] == "2027-01-06T17:59:59+00:00"
    c.recalculate_deadlines(OFFICIAL_2027, as_("system", at(4)))
    # Officially Mon 4 Jan is off too: Tue 5, Wed 6, Thu 7, plus the two paused hours.
    reply = c.deadlines["reply"]
    assert (reply["due_at"], reply["calendar"], reply["policy_version"]) == (
        "2027-01-07T17:59:59+00:00",
        "official",
        "2027.1",
    )
    assert reply["recalculated_from"] == "2027-01-06T17:59:59+00:00"
    # Resolution, 5 working days: Fri 8 Jan estimated, Mon 11 Jan officially.
    assert c.deadlines["resolution"]["due_at"] == "2027-01-11T17:59:59+00:00"
    # The 72 hours and the 15 days never depended on the calendar: untouched.
    assert c.deadlines["investigation"]["policy_version"] == "2026.2"
    assert c.recalculations[0]["changes"] == [
        {
            "key": "reply",
            "previous_due_at": "2027-01-06T17:59:59+00:00",
            "due_at": "2027-01-07T17:59:59+00:00",
            "previous_policy_version": "2026.2",
            "policy_version": "2027.1",
        },
        {
            "key": "resolution",
            "previous_due_at": "2027-01-08T17:59:59+00:00",
            "due_at": "2027-01-11T17:59:59+00:00",
            "previous_policy_version": "2026.2",
            "policy_version": "2027.1",
        },
    ]
    # The reply moved later than the customer was told: a progress notice with the new date,
    # saying why.
    progress = c.notifications["progress-1"]
    assert progress["dates"] == {"reply": "2027-01-07T17:59:59+00:00"}
    assert text(progress, acceptance_no="N", data={}, tz=POLICY.tz) == (
        "【投诉进展 N】根据国家公布的节假日安排,我们将在2027年01月08日01:59前答复您。"
    )
    with pytest.raises(InvalidCommand):  # nothing left to count again
        c.recalculate_deadlines(OFFICIAL_2027, as_("system", at(5)))


def test_a_policy_that_still_estimates_changes_nothing() -> None:
    c = accepted_on_new_years_eve()
    still = Policy.from_toml(
        DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace(
            'version = "2026.2"', 'version = "2026.3"'
        )
    )
    with pytest.raises(InvalidCommand, match=r"2026\.3"):
        c.recalculate_deadlines(still, as_("system", at(1)))
    assert c.recalculations == ()


def test_a_date_an_extension_promised_stays() -> None:
    c = accepted_on_new_years_eve()
    c.assign("net", "inv-7", Complexity.COMPLEX, POLICY, as_("supervisor", at(1)))
    promised = datetime(2027, 1, 12, 10, 0, tzinfo=UTC)
    c.extend("vendor", promised, "预计 1 月 12 日前答复", POLICY, as_("supervisor", at(2)))
    assert c.deadlines["reply"]["due_at"] == promised.isoformat()
    with pytest.raises(InvalidCommand):  # the estimated limits were all moved by the promise
        c.recalculate_deadlines(OFFICIAL_2027, as_("system", at(3)))
    assert c.deadlines["reply"]["due_at"] == promised.isoformat()


def test_only_the_calendar_changes_not_the_length() -> None:
    """A new version may also change the rules; a running limit keeps the length it started
    with and is only counted again on the official calendar."""
    longer = Policy.from_toml(
        DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
        .replace('version = "2026.2"', 'version = "2027.2"')
        .replace(
            "extra_holidays = []     # e.g. 2026-12-31, a company holiday",
            "extra_holidays = [2027-01-04]\nofficial_years = [2027]",
        )
        .replace(
            'source = "seed 003: reply with the result within 3 working days"',
            'source = "a longer draft"\n[[limit]]\nname = "reply"\namount = 10\n'
            'unit = "working_days"\nmet_by = ["Replied"]\napplies = { channel = ["hotline"] }',
        )
    )
    c = accepted_on_new_years_eve()
    c.recalculate_deadlines(longer, as_("system", at(1)))
    # Still 3 working days, counted officially: Tue 5, Wed 6, Thu 7 Jan.
    assert c.deadlines["reply"]["due_at"] == "2027-01-07T15:59:59+00:00"
    assert c.deadlines["reply"]["amount"] == 3


def test_a_limit_is_counted_again_up_to_its_very_due_instant_but_not_once_it_passed() -> None:
    c = accepted_on_new_years_eve()
    # Estimated: the reply is due at the end of Wed 6 Jan, the resolution of Fri 8 Jan.
    due = datetime.fromisoformat(c.deadlines["reply"]["due_at"])
    c.recalculate_deadlines(OFFICIAL_2027, as_("system", due))
    assert c.deadlines["reply"]["due_at"] == "2027-01-07T15:59:59+00:00"

    later = accepted_on_new_years_eve()
    later.recalculate_deadlines(OFFICIAL_2027, as_("system", due + timedelta(seconds=1)))
    # The reply limit passed (it is missed, and escalates on its old date); only the
    # resolution, still running, is counted again.
    assert later.deadlines["reply"]["due_at"] == "2027-01-06T15:59:59+00:00"
    assert [change["key"] for change in later.recalculations[0]["changes"]] == ["resolution"]


def test_a_limit_met_on_an_estimated_calendar_stays_as_it_was() -> None:
    c = accepted_on_new_years_eve()
    c.assign("net", "inv-7", Complexity.SIMPLE, POLICY, as_("supervisor", at(1)))
    c.record_findings("c", "b", "r", False, as_("supervisor", at(2)))
    c.reply("sms", "c", "b", "p", "e", POLICY, as_("supervisor", at(3)))
    c.recalculate_deadlines(OFFICIAL_2027, as_("system", at(4)))
    assert c.deadlines["reply"]["due_at"] == "2027-01-06T15:59:59+00:00"
    assert c.deadlines["reply"]["calendar"] == "estimated"
    # Only the callback the reply opened is still running to be counted again.
    assert [change["key"] for change in c.recalculations[0]["changes"]] == ["callback"]


def test_limits_counted_on_official_days_only_are_not_counted_again() -> None:
    """A complaint of early December 2026: its working days are all official already."""
    c = new_complaint(at=NOW2 - timedelta(days=30), business_type="fixed_line")
    with pytest.raises(InvalidCommand, match="No running limit was counted on an estimated"):
        c.recalculate_deadlines(OFFICIAL_2027, as_("system", NOW2 - timedelta(days=29)))
    assert c.recalculations == ()


def test_a_limit_still_estimated_does_not_stop_the_others_being_counted_again() -> None:
    """A policy whose first limit runs into 2028 (estimated under both versions): the reply
    after it, official in 2027.1, is counted again all the same."""
    survey = (
        '[[limit]]\nname = "survey"\namount = 300\nunit = "working_days"\n'
        'met_by = ["Archived"]\nsource = "a test"\n\n'
    )

    def with_survey(policy_text: str) -> Policy:
        return Policy.from_toml(policy_text.replace("# --- acceptance", survey + "# --- a", 1))

    base = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    before = with_survey(base)
    official = with_survey(
        base.replace('version = "2026.2"', 'version = "2027.1"').replace(
            "extra_holidays = []     # e.g. 2026-12-31, a company holiday",
            "extra_holidays = [2027-01-04]\nofficial_years = [2027]",
        )
    )
    c = new_complaint(at=NOW2, business_type="fixed_line", policy=before)
    assert next(iter(c.deadlines)) == "survey"
    c.recalculate_deadlines(official, as_("system", at(1)))
    assert c.deadlines["survey"]["calendar"] == "estimated"
    assert [change["key"] for change in c.recalculations[0]["changes"]] == ["reply", "resolution"]
