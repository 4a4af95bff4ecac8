"""The business calendar and the deadlines each policy rule produces."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from shared.domain.errors import PolicyError
from shared.domain.lifecycle import Opening
from shared.domain.policy import DEFAULT_POLICY_PATH, Policy, facts_of, load_policies

POLICY = Policy.load()


def beijing(text: str) -> datetime:
    return datetime.fromisoformat(text + "+08:00")


def facts(**overrides: str | None) -> dict[str, str | None]:
    """A fixed-line billing complaint by phone, unless overridden."""
    base: dict[str, str | None] = dict(
        facts_of(
            channel="hotline",
            business_type="fixed_line",
            category="billing",
            vip_tier=None,
            area=None,
        )
    )
    base.update(overrides)
    return base


def due(name: str, accepted: datetime, received: datetime | None = None, **fact: str | None) -> str:
    deadlines = POLICY.deadlines(facts(**fact), accepted_at=accepted, received_at=received)
    found = {d["name"]: d for d in deadlines}
    return str(datetime.fromisoformat(found[name]["due_at"]).astimezone(POLICY.tz).isoformat())


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 10, 1), False),  # National Day
        (date(2026, 10, 7), False),  # National Day holiday week
        (date(2026, 10, 8), True),
        (date(2026, 9, 20), True),  # Sunday, adjusted working day for National Day
        (date(2026, 10, 10), True),  # Saturday, adjusted working day
        (date(2026, 10, 11), False),  # an ordinary Sunday
        (date(2026, 2, 14), True),  # Saturday before Spring Festival, adjusted
        (date(2026, 2, 17), False),  # Spring Festival
        (date(2026, 11, 23), True),
    ],
)
def test_calendar_knows_holidays_and_adjusted_weekends(day: date, working: bool) -> None:
    assert POLICY.calendar.is_working_day(day) is working


def test_working_days_skip_the_national_day_week() -> None:
    # Accepted Wednesday 30 Sep 2026: 3 working days are 8, 9 and 10 Oct (a working Saturday).
    assert due("reply", beijing("2026-09-30T15:00:00")) == "2026-10-10T23:59:59+08:00"


def test_working_days_count_an_adjusted_working_sunday() -> None:
    # Accepted Saturday 19 Sep 2026: Sunday 20 Sep is a working day, then Mon 21, Tue 22.
    assert due("reply", beijing("2026-09-19T09:00:00")) == "2026-09-22T23:59:59+08:00"


def test_working_days_across_midnight_utc_use_beijing_dates() -> None:
    # 01:30 Tuesday in Beijing is still Monday in UTC; the count starts from Tuesday.
    assert due("reply", beijing("2026-11-24T01:30:00")) == "2026-11-27T23:59:59+08:00"


@pytest.mark.parametrize(
    ("name", "fact", "expected"),
    [
        ("reply", {}, "2026-11-26T23:59:59+08:00"),  # 3 working days
        (
            "reply",
            {"category": "network_coverage", "business_type": "broadband"},
            "2026-11-26T23:59:59+08:00",
        ),
        (  # every mobile complaint (移网), whatever its category: 2 working days
            "reply",
            {"category": "network_coverage", "business_type": "mobile"},
            "2026-11-25T23:59:59+08:00",
        ),
        ("reply", {"business_type": "mobile"}, "2026-11-25T23:59:59+08:00"),
        (
            "reply",
            {"business_type": "mobile", "category": "service_attitude"},
            "2026-11-25T23:59:59+08:00",
        ),
        (  # the VIP cap shortens even the most specific rule
            "reply",
            {"business_type": "mobile", "vip_tier": "supreme"},
            "2026-11-24T23:59:59+08:00",
        ),
        (  # a cap never lengthens: gold has no cap, diamond's 1 day is the shortest
            "reply",
            {"vip_tier": "gold"},
            "2026-11-26T23:59:59+08:00",
        ),
        ("reply", {"vip_tier": "supreme"}, "2026-11-24T23:59:59+08:00"),  # 1 working day
        # A complex complaint is answered after its longer investigation: 6 working days.
        ("reply", {"complexity": "complex"}, "2026-12-01T23:59:59+08:00"),
        # Equally specific (mobile vs complex): the shorter wins, mobile's 2 days.
        (
            "reply",
            {"complexity": "complex", "business_type": "mobile"},
            "2026-11-25T23:59:59+08:00",
        ),
        ("investigation", {}, "2026-11-26T10:00:00+08:00"),  # 72 hours
        ("investigation", {"complexity": "complex"}, "2026-11-30T23:59:59+08:00"),
        (  # a complex mobile complaint is still replied within 2 working days
            "investigation",
            {"complexity": "complex", "business_type": "mobile"},
            "2026-11-25T23:59:59+08:00",
        ),
        ("resolution", {}, "2026-11-30T23:59:59+08:00"),  # 5 working days
        ("resolution", {"category": "installation"}, "2026-11-30T23:59:59+08:00"),
        ("resolution", {"complexity": "complex"}, "2026-12-01T23:59:59+08:00"),  # 6
        ("operator_answer", {}, "2026-12-08T10:00:00+08:00"),  # 15 calendar days
        (  # broadband installed or moved: 72 hours
            "installation",
            {"business_type": "broadband", "category": "installation"},
            "2026-11-26T10:00:00+08:00",
        ),
    ],
)
def test_deadline_per_policy_row(name: str, fact: dict[str, str], expected: str) -> None:
    assert due(name, beijing("2026-11-23T10:00:00"), **fact) == expected


@pytest.mark.parametrize(
    ("business_type", "area", "hours"),
    [
        ("broadband", "urban", 24),  # seed 004: 城区24小时
        ("broadband", "suburban_county", 36),  # 郊县36小时
        ("broadband", "rural", 48),  # at most 48 h in rural areas
        ("broadband", None, 24),  # area unknown: the urban commitment
        ("fixed_line", "urban", 48),  # 《电信条例》 Art. 33: towns 48 h
        ("fixed_line", "suburban_county", 48),
        ("fixed_line", None, 48),
        ("fixed_line", "rural", 72),  # rural 72 h
    ],
)
def test_repair_by_service_and_area(business_type: str, area: str | None, hours: int) -> None:
    accepted = beijing("2026-11-23T10:00:00")
    expected = (accepted + timedelta(hours=hours)).isoformat()
    got = due("repair", accepted, business_type=business_type, category="fault_repair", area=area)
    assert got == expected


@pytest.mark.parametrize(
    ("business_type", "category"),
    [("mobile", "fault_repair"), ("data", "fault_repair"), ("broadband", "installation")],
)
def test_no_repair_limit_where_the_standards_set_none(business_type: str, category: str) -> None:
    deadlines = POLICY.deadlines(
        facts(business_type=business_type, category=category),
        accepted_at=beijing("2026-11-23T10:00:00"),
    )
    assert "repair" not in {d["name"] for d in deadlines}


def test_every_rule_cites_its_source() -> None:
    assert all(rule.source for rule in POLICY.document.limit)
    assert all(figure.source for figure in POLICY.document.average)
    assert [(a.group, a.hours) for a in POLICY.document.average] == [
        ("broadband, towns", 24),
        ("broadband, rural", 36),
    ]


def test_network_coverage_has_no_resolution_limit() -> None:
    deadlines = POLICY.deadlines(facts(category="network_coverage"), accepted_at=datetime.now(UTC))
    assert "resolution" not in {d["name"] for d in deadlines}


def test_acceptance_limit_only_for_non_live_channels() -> None:
    received = beijing("2026-11-21T09:00:00")
    accepted = beijing("2026-11-23T10:00:00")
    assert due("acceptance", accepted, received, channel="letter") == "2026-11-22T09:00:00+08:00"
    hotline = POLICY.deadlines(facts(channel="hotline"), accepted_at=accepted)
    assert "acceptance" not in {d["name"] for d in hotline}


def test_every_deadline_records_the_policy_version() -> None:
    deadlines = POLICY.deadlines(facts(), accepted_at=datetime.now(UTC))
    assert deadlines and all(d["policy_version"] == "2026.2" for d in deadlines)


def test_a_policy_file_changes_limits_without_code() -> None:
    policy = Policy.from_toml(
        """
        version = "strict-1"
        [calendar]
        extra_holidays = [2026-11-24]
        [[limit]]
        name = "reply"
        amount = 1
        unit = "working_days"
        met_by = ["Replied"]
        """
    )
    deadlines = policy.deadlines(facts(), accepted_at=beijing("2026-11-23T10:00:00"))
    assert [d["due_at"] for d in deadlines] == ["2026-11-25T15:59:59+00:00"]
    assert deadlines[0]["policy_version"] == "strict-1"


@pytest.mark.parametrize(
    "text",
    [
        "version = ''\n[[limit]]\nname='x'\namount=1\nunit='hours'\nmet_by=['Replied']",
        "version = 'v'\n[[limit]]\nname='x'\namount=1\nunit='fortnights'\nmet_by=['Replied']",
        "version = 'v'\n[[limit]]\nname='x'\namount=1\nunit='hours'\nmet_by=['R']\n"
        "applies={colour=['red']}",
        "version = 'v'",
        "not toml at all [",
        "version = 'v'\n[[limit]]\nname='x'\namount=1.5\nunit='calendar_days'\nmet_by=['Replied']",
        # An event that can never meet a limit (a typo would leave it running for ever).
        "version = 'v'\n[[limit]]\nname='x'\namount=1\nunit='hours'\nmet_by=['Repiled']",
        # A situation that does not exist would never open the limit.
        "version = 'v'\n[[limit]]\nname='x'\namount=1\nunit='hours'\nmet_by=['Replied']\n"
        "opens_on='repleid'",
        # Only what opens at acceptance can count from when the complaint reached us.
        "version = 'v'\n[[limit]]\nname='x'\namount=1\nunit='hours'\nmet_by=['Replied']\n"
        "opens_on='replied'\nstart='received'",
        # One limit, two openings: which one would it be?
        "version = 'v'\n[[limit]]\nname='x'\namount=1\nunit='hours'\nmet_by=['Replied']\n"
        "[[limit]]\nname='x'\namount=1\nunit='hours'\nmet_by=['Replied']\nopens_on='replied'",
    ],
)
def test_invalid_policy_files_are_refused(text: str) -> None:
    with pytest.raises(PolicyError):
        Policy.from_toml(text)


@pytest.mark.parametrize(
    ("category", "occurred", "barred"),
    [
        ("billing", "2026-06-22T00:00:00", True),
        ("billing", "2026-06-24T00:00:00", False),
        ("other", "2024-11-22T00:00:00", True),
        ("other", "2024-11-24T00:00:00", False),
    ],
)
def test_limitation_periods(category: str, occurred: str, barred: bool) -> None:
    now = beijing("2026-11-23T10:00:00")
    assert POLICY.is_time_barred(category, beijing(occurred), now) is barred


def test_hours_may_be_fractional() -> None:
    policy = Policy.from_toml(
        "version = 'v'\n[[limit]]\nname='x'\namount=0.5\nunit='hours'\nmet_by=['Replied']"
    )
    start = beijing("2026-11-23T10:00:00")
    (deadline,) = policy.deadlines(facts(), accepted_at=start)
    assert datetime.fromisoformat(deadline["due_at"]) == start + timedelta(minutes=30)


def test_major_incident_settings_come_from_the_policy() -> None:
    assert POLICY.document.major_incident.threshold == 20
    assert POLICY.document.major_incident.window_minutes == 60
    with pytest.raises(PolicyError):
        Policy.from_toml(
            "version = 'v'\n[major_incident]\nthreshold = 1\n[[limit]]\nname='x'\namount=1\n"
            "unit='hours'\nmet_by=['Replied']"
        )


def test_reports_may_name_every_policy_version_in_the_directory(tmp_path: Path) -> None:
    current = Policy.load()
    (tmp_path / "draft.toml").write_text(
        "version = 'draft'\n[[limit]]\nname='x'\namount=1\nunit='hours'\nmet_by=['Replied']"
    )
    (tmp_path / "same.toml").write_text(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    assert sorted(load_policies(tmp_path, current)) == ["2026.2", "draft"]
    assert list(load_policies(tmp_path / "missing", current)) == ["2026.2"]
    # One version with other rules is a mistake, not a choice.
    (tmp_path / "clash.toml").write_text(
        "version = '2026.2'\n[[limit]]\nname='x'\namount=2\nunit='hours'\nmet_by=['Replied']"
    )
    with pytest.raises(PolicyError, match=r"clash\.toml"):
        load_policies(tmp_path, current)


def test_the_policy_in_force_starts_a_limit_in_every_situation() -> None:
    POLICY.check_in_force()
    only_intake = Policy.from_toml(
        "version = 'v'\n[[limit]]\nname='x'\namount=1\nunit='hours'\nmet_by=['Replied']\n"
        "[[limit]]\nname='y'\namount=1\nunit='hours'\nmet_by=['CallbackRecorded']\n"
        "opens_on='replied'\napplies={vip_tier=['gold']}"
    )  # fine to re-analyse under
    with pytest.raises(PolicyError) as refused:
        only_intake.check_in_force()
    # The gold-only rule does not cover a complaint entering `replied`; nothing covers the rest.
    assert "['escalated', 'reopened', 'replied', 'callback_done']" in str(refused.value)


@pytest.mark.parametrize(
    ("level", "due"),
    [("provincial", "2026-11-26T23:59:59+08:00"), ("headquarters", "2026-11-30T23:59:59+08:00")],
)
def test_each_level_has_its_own_review_limit(level: str, due: str) -> None:
    # Escalated on Monday 23 Nov 10:00: 3 working days at a province, 5 at headquarters.
    (review,) = POLICY.deadlines(
        facts(level=level),
        accepted_at=beijing("2026-11-23T10:00:00"),
        opening=Opening.ESCALATED,
        only=["escalation_review"],
    )
    assert datetime.fromisoformat(review["due_at"]).astimezone(POLICY.tz).isoformat() == due
    assert review["bound_to"] == "escalated" and review["level"] == level


def test_an_alert_at_headquarters_starts_the_limit_again_for_a_working_day() -> None:
    missed = {
        "key": "callback",
        "name": "callback",
        "opened_by": "replied",
        "bound_to": "replied",
        "level": "headquarters",
        "met_by": ["CallbackRecorded"],
        "target": 1.0,
        "pausable": False,
    }
    # Friday 27 Nov 15:00 Beijing: one working day on is the end of Monday 30 Nov.
    again = POLICY.alert_follow_up(missed, beijing("2026-11-27T15:00:00"))
    assert again["due_at"] == "2026-11-30T15:59:59+00:00"
    assert again["follows"] == "callback" and again["met_by"] == ["CallbackRecorded"]
    assert again["bound_to"] == "replied" and again["policy_version"] == "2026.2"
