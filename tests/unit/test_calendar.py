"""The business calendar and how a rule's amount becomes a due time, dates worked out by hand.

2026 in China (the `holidays` package): Mid-Autumn Festival Fri 25 Sep off; National Day week
Thu 1 – Wed 7 Oct off; Sun 20 Sep and Sat 10 Oct are working days. Beijing is UTC+8 all year,
so the end of a working day, 23:59:59 there, is 15:59:59 UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from shared.domain.errors import PolicyError
from shared.domain.policy import Policy, Span, Unit

pytestmark = pytest.mark.usefixtures("server_in_beijing")

BEIJING = timezone(timedelta(hours=8))

COMPANY = Policy.from_toml(
    """
version = "company"
[calendar]
extra_workdays = [2026-11-28, 2026-10-01]   # a Saturday; National Day
extra_holidays = [2026-12-31, 2026-10-10]   # a Thursday; an adjusted working Saturday
[[limit]]
name = "reply"
amount = 1
unit = "working_days"
met_by = ["Replied"]
"""
)
DEFAULT = Policy.load()


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 11, 28), True),  # Saturday, a company working day
        (date(2026, 10, 1), True),  # National Day, a company working day all the same
        (date(2026, 12, 31), False),  # Thursday, a company holiday
        (date(2026, 10, 10), False),  # the adjusted working Saturday, a company holiday
        (date(2026, 11, 29), False),  # an ordinary Sunday
        (date(2026, 11, 27), True),  # an ordinary Friday
        (date(2026, 10, 2), False),  # National Day week
    ],
)
def test_company_days_override_the_public_calendar(day: date, working: bool) -> None:
    assert COMPANY.calendar.is_working_day(day) is working


def test_the_public_calendar_alone_knows_its_holidays_and_adjusted_days() -> None:
    assert DEFAULT.calendar.is_working_day(date(2026, 11, 28)) is False  # Saturday
    assert DEFAULT.calendar.is_working_day(date(2026, 12, 31)) is True  # Thursday
    assert DEFAULT.calendar.is_working_day(date(2026, 9, 25)) is False  # Mid-Autumn
    assert DEFAULT.calendar.is_working_day(date(2026, 10, 10)) is True  # adjusted Saturday


def end_of(day: str) -> datetime:
    """23:59:59 in Beijing on `day`, as the UTC time it is stored as."""
    return datetime.fromisoformat(f"{day}T15:59:59+00:00")


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        # Friday 27 Nov: the company's Saturday 28 Nov counts.
        (datetime(2026, 11, 27, 10, tzinfo=BEIJING), 1, end_of("2026-11-28")),
        # Wednesday 30 Dec: the company's holiday on Thursday 31 Dec does not; Fri 1 Jan 2027
        # is New Year's Day, so Mon 4 Jan 2027.
        (datetime(2026, 12, 30, 10, tzinfo=BEIJING), 1, end_of("2027-01-04")),
        # Wednesday 30 Sep: the company works on Thu 1 Oct.
        (datetime(2026, 9, 30, 10, tzinfo=BEIJING), 1, end_of("2026-10-01")),
        # Friday 9 Oct: the adjusted Saturday 10 Oct is the company's holiday: Mon 12 Oct.
        (datetime(2026, 10, 9, 10, tzinfo=BEIJING), 1, end_of("2026-10-12")),
    ],
)
def test_working_days_count_the_company_days(start: datetime, days: int, due: datetime) -> None:
    assert COMPANY.calendar.add_working_days(start, days) == due


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        # Wednesday 30 Sep + 1: the whole National Day week is off, Thu 8 Oct.
        (datetime(2026, 9, 30, 10, tzinfo=BEIJING), 1, end_of("2026-10-08")),
        # Thursday 24 Sep + 1: Mid-Autumn Fri 25, then the weekend: Mon 28 Sep.
        (datetime(2026, 9, 24, 10, tzinfo=BEIJING), 1, end_of("2026-09-28")),
        # Saturday 19 Sep + 1: the adjusted working Sunday 20 Sep.
        (datetime(2026, 9, 19, 10, tzinfo=BEIJING), 1, end_of("2026-09-20")),
        # Monday 23 Nov + 10: 24, 25, 26, 27, 30 Nov, 1, 2, 3, 4, 7 Dec.
        (datetime(2026, 11, 23, 10, tzinfo=BEIJING), 10, end_of("2026-12-07")),
        # 23:30 on Sunday 22 Nov in Beijing (15:30 UTC): the count starts from that Sunday.
        (datetime(2026, 11, 22, 15, 30, tzinfo=UTC), 1, end_of("2026-11-23")),
        # 00:30 on Monday 23 Nov in Beijing is still Sunday in UTC: it starts from Monday.
        (datetime(2026, 11, 22, 16, 30, tzinfo=UTC), 1, end_of("2026-11-24")),
    ],
)
def test_working_days_in_the_public_calendar(start: datetime, days: int, due: datetime) -> None:
    got = DEFAULT.calendar.add_working_days(start, days)
    assert got == due
    assert got.tzinfo is UTC  # stored as UTC


def test_the_working_day_ends_at_midnight_of_the_policys_timezone() -> None:
    utc = Policy.from_toml(
        "version = 'u'\ntimezone = 'UTC'\n[[limit]]\nname='x'\namount=1\nunit='hours'\n"
        "met_by=['Replied']"
    )
    start = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    assert utc.calendar.add_working_days(start, 1) == datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)
    assert utc.tz.key == "UTC" and DEFAULT.tz.key == "Asia/Shanghai"


def test_an_unknown_timezone_is_refused() -> None:
    with pytest.raises(PolicyError, match="unknown timezone 'Mars/Olympus'"):
        Policy.from_toml(
            "version = 'v'\ntimezone = 'Mars/Olympus'\n[[limit]]\nname='x'\namount=1\n"
            "unit='hours'\nmet_by=['Replied']"
        )


START = datetime(2026, 11, 23, 10, 0, tzinfo=BEIJING)  # Monday


@pytest.mark.parametrize(
    ("span", "due"),
    [
        (Span(amount=1.5, unit=Unit.HOURS), datetime(2026, 11, 23, 3, 30, tzinfo=UTC)),
        (Span(amount=72, unit=Unit.HOURS), datetime(2026, 11, 26, 2, 0, tzinfo=UTC)),
        (Span(amount=2, unit=Unit.CALENDAR_DAYS), datetime(2026, 11, 25, 2, 0, tzinfo=UTC)),
        # 15 calendar days run through weekends: Tue 8 Dec, 10:00 in Beijing.
        (Span(amount=15, unit=Unit.CALENDAR_DAYS), datetime(2026, 12, 8, 2, 0, tzinfo=UTC)),
        (Span(amount=2, unit=Unit.WORKING_DAYS), end_of("2026-11-25")),
        (Span(amount=5, unit=Unit.WORKING_DAYS), end_of("2026-11-30")),  # over the weekend
    ],
)
def test_a_span_from_a_start(span: Span, due: datetime) -> None:
    got = DEFAULT.due_at(span, START)
    assert got == due
    assert got.utcoffset() == timedelta(0)  # stored as UTC, whatever the unit


def test_a_start_without_timezone_is_refused() -> None:
    with pytest.raises(ValueError) as refused:
        DEFAULT.due_at(Span(amount=1, unit=Unit.HOURS), datetime(2026, 11, 23, 10))
    assert str(refused.value) == "deadline start must be timezone-aware"


def test_an_extension_may_run_ten_working_days_past_the_first_limit() -> None:
    # First due at the end of Mon 30 Nov: 1, 2, 3, 4, 7, 8, 9, 10, 11, 14 Dec.
    assert DEFAULT.latest_extension(end_of("2026-11-30")) == end_of("2026-12-14")
