"""Time-limit policy and the business calendar: pure functions of (facts, time).

The limits of domain.md live in a TOML file (`shared/policy/default.toml` by default), not in
code. Each rule says which complaints it applies to, how long the limit is, whether it counts
hours, calendar days or working days, which event meets it, and the on-time target. Working days
come from the `holidays` package's Chinese calendar, which knows the public holidays and the
adjusted working weekends (调休), plus any extra dates the policy file lists.
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from dateutil.relativedelta import relativedelta
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.domain.codes import BusinessType, Category
from shared.domain.errors import PolicyError
from shared.domain.lifecycle import BOUND, MILESTONES, Opening

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "policy" / "default.toml"

#: The facts of a complaint a rule may select on.
FACT_KEYS = ("channel", "business_type", "category", "vip_tier", "area", "complexity", "level")


class Unit(StrEnum):
    HOURS = "hours"
    CALENDAR_DAYS = "calendar_days"
    WORKING_DAYS = "working_days"


class Start(StrEnum):
    """The moment a limit starts to run."""

    RECEIVED = "received"  # when the complaint reached us (letters, e-mail: before acceptance)
    ACCEPTED = "accepted"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitRule(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    #: Whole days; hours may be fractional (0.5 = 30 minutes).
    amount: int | float = Field(gt=0, le=10_000)
    unit: Unit
    start: Start = Start.ACCEPTED
    #: The situation that starts it (shared.domain.lifecycle.Opening): acceptance by default.
    opens_on: Opening = Opening.ACCEPTED
    met_by: tuple[str, ...] = Field(min_length=1)
    target: float = Field(default=1.0, gt=0, le=1)
    pausable: bool = False
    #: A cap only ever shortens the limit chosen for these facts (e.g. VIP priority handling).
    cap: bool = False
    source: str = ""
    applies: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _whole_days(self) -> LimitRule:
        if self.unit is not Unit.HOURS and self.amount != int(self.amount):
            raise ValueError(f"{self.unit.value} must be a whole number")
        if self.start is Start.RECEIVED and self.opens_on is not Opening.ACCEPTED:
            raise ValueError("only limits opened at acceptance can start when received")
        return self

    @field_validator("met_by")
    @classmethod
    def _known_events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - MILESTONES
        if unknown:
            raise ValueError(f"unknown events {sorted(unknown)}; use {sorted(MILESTONES)}")
        return value

    @field_validator("applies")
    @classmethod
    def _known_facts(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        unknown = set(value) - set(FACT_KEYS)
        if unknown:
            raise ValueError(f"unknown facts {sorted(unknown)}; use {list(FACT_KEYS)}")
        return value

    def matches(self, facts: Mapping[str, str | None]) -> bool:
        return all(facts.get(key) in allowed for key, allowed in self.applies.items())


class AverageFigure(_Strict):
    """A report figure rather than a limit: the average time the complaints with these facts
    took to meet `limit` (seed 004's repair averages for towns and rural areas)."""

    limit: str
    group: str = Field(min_length=1)
    applies: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    hours: float = Field(gt=0)
    source: str = ""

    @field_validator("applies")
    @classmethod
    def _known_facts(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        return LimitRule._known_facts(value)

    def matches(self, facts: Mapping[str, str | None]) -> bool:
        return all(facts.get(key) in allowed for key, allowed in self.applies.items())


class CalendarConfig(_Strict):
    country: str = "CN"
    extra_holidays: tuple[date, ...] = ()
    extra_workdays: tuple[date, ...] = ()
    #: Years whose official schedule (公布的放假安排) this policy brings in `extra_holidays` and
    #: `extra_workdays`, beyond the years the holidays package knows officially.
    official_years: tuple[int, ...] = ()
    #: The last year whose official schedule the holidays package holds; found in the package
    #: when not set. Later years it only estimates (no adjusted working weekends, 调休).
    package_official_through: int | None = None


class Calendar(StrEnum):
    """Whether a deadline was counted on a year's official holiday schedule or an estimate."""

    OFFICIAL = "official"
    ESTIMATED = "estimated"


def _package_official_through(calendar: holidays.HolidayBase) -> int | None:
    """The last year the package's own table of official schedules covers (for China, its
    `ChinaStaticHolidays`: the State Council's notices, year by year); None when the country
    has no such table, and every year counts as official."""
    module = importlib.import_module(type(calendar).__module__)
    years = [
        year
        for name in dir(module)
        if name.endswith("StaticHolidays") and name != "StaticHolidays"
        for year in getattr(getattr(module, name), "special_public_holidays", {})
    ]
    return max(years) if years else None


class LimitationConfig(_Strict):
    """Limitation periods after which a dispute is flagged at intake (MIIT appeal rules Art. 11)."""

    fee_categories: tuple[Category, ...] = (Category.BILLING,)
    fee_months: int = Field(default=5, gt=0)
    other_months: int = Field(default=24, gt=0)


class MajorIncidentConfig(_Strict):
    """Many complaints of one category from one area in a short window are one major incident
    (群体性投诉), escalated once."""

    threshold: int = Field(default=20, ge=2)
    window_minutes: int = Field(default=60, gt=0, le=7 * 24 * 60)


class Span(_Strict):
    """A length of time in one unit: hours (may be fractional), calendar or working days."""

    amount: int | float = Field(gt=0, le=10_000)
    unit: Unit

    @model_validator(mode="after")
    def _whole_days(self) -> Span:
        if self.unit is not Unit.HOURS and self.amount != int(self.amount):
            raise ValueError(f"{self.unit.value} must be a whole number")
        return self


class EscalationConfig(_Strict):
    """At headquarters there is no higher level: a limit that passes there alerts its
    supervisors and runs again for this long, alerting again each time it passes."""

    alert_repeat: Span = Span(amount=1, unit=Unit.WORKING_DAYS)
    alert_source: str = (
        "policy choice: headquarters supervisors are alerted and the limit runs again"
    )


class ExtensionConfig(_Strict):
    """A complex complaint's investigation may be extended, with a reason and a notice to the
    customer (告知进展, seed 002): the limits in `moves` are moved to at least the new date,
    which may lie at most `max` after the investigation limit as first set."""

    max: Span = Span(amount=10, unit=Unit.WORKING_DAYS)
    #: The investigation limits an extension is asked for (the first, or the one a review
    #: opened when it sent the complaint back).
    extends: tuple[str, ...] = ("investigation", "reinvestigation")
    moves: tuple[str, ...] = (
        "investigation",
        "reply",
        "resolution",
        "reinvestigation",
        "reply_after_review",
    )
    source: str = "policy choice: at most 10 working days beyond the first investigation limit"


class PolicyDocument(_Strict):
    version: str = Field(min_length=1)
    timezone: str = "Asia/Shanghai"
    calendar: CalendarConfig = CalendarConfig()
    limitation: LimitationConfig = LimitationConfig()
    major_incident: MajorIncidentConfig = MajorIncidentConfig()
    escalation: EscalationConfig = EscalationConfig()
    extension: ExtensionConfig = ExtensionConfig()
    limit: tuple[LimitRule, ...] = Field(min_length=1)
    average: tuple[AverageFigure, ...] = ()

    @model_validator(mode="after")
    def _one_opening_per_limit(self) -> PolicyDocument:
        names: dict[str, Opening] = {}
        for rule in self.limit:
            if names.setdefault(rule.name, rule.opens_on) is not rule.opens_on:
                raise ValueError(f"every rule of limit {rule.name!r} must open on the same event")
        return self


class BusinessCalendar:
    """Working days: weekends and public holidays off, adjusted working weekends on."""

    def __init__(self, config: CalendarConfig, tz: ZoneInfo) -> None:
        self.tz = tz
        self._holidays = holidays.country_holidays(config.country)
        self._extra_holidays = frozenset(config.extra_holidays)
        self._extra_workdays = frozenset(config.extra_workdays)
        self._official_years = frozenset(config.official_years)
        self.official_through = config.package_official_through or _package_official_through(
            self._holidays
        )

    def is_estimated(self, year: int) -> bool:
        """The package only estimates this year, and the policy brings no official schedule."""
        beyond = self.official_through is not None and year > self.official_through
        return beyond and year not in self._official_years

    def counted(self, start: datetime, end: datetime) -> Calendar:
        """Whether working days counted from `start` to `end` rest on official schedules."""
        first, last = start.astimezone(self.tz).year, end.astimezone(self.tz).year
        estimated = any(self.is_estimated(year) for year in range(first, last + 1))
        return Calendar.ESTIMATED if estimated else Calendar.OFFICIAL

    def is_working_day(self, day: date) -> bool:
        if day in self._extra_workdays:
            return True
        if day in self._extra_holidays:
            return False
        return bool(self._holidays.is_working_day(day))

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The end of the `days`-th working day after the local day on which `start` falls."""
        day = start.astimezone(self.tz).date()
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        end_of_day = datetime.combine(day, time(23, 59, 59), tzinfo=self.tz)
        return end_of_day.astimezone(UTC)


class Policy:
    """A loaded, validated policy file. Immutable; every deadline records its `version`."""

    def __init__(self, document: PolicyDocument) -> None:
        self.document = document
        self.version = document.version
        try:
            self.tz = ZoneInfo(document.timezone)
        except Exception as exc:
            raise PolicyError(f"unknown timezone {document.timezone!r}") from exc
        self.calendar = BusinessCalendar(document.calendar, self.tz)

    @classmethod
    def from_toml(cls, text: str) -> Policy:
        try:
            raw: dict[str, Any] = tomllib.loads(text)
            return cls(PolicyDocument.model_validate(raw))
        except (tomllib.TOMLDecodeError, ValidationError) as exc:
            raise PolicyError(f"invalid policy file: {exc}") from exc

    @classmethod
    def load(cls, path: Path | str = DEFAULT_POLICY_PATH) -> Policy:
        return cls.from_toml(Path(path).read_text(encoding="utf-8"))

    def check_in_force(self) -> None:
        """No open complaint without a running limit: whatever a complaint's facts, each
        opening must start at least one limit, so the policy the services run under needs a
        rule that applies to all for each. (A policy only re-analysed under may lack some.)"""
        missing = [
            opening.value
            for opening in Opening
            if not any(
                r.opens_on is opening and not r.applies and not r.cap for r in self.document.limit
            )
        ]
        if missing:
            raise PolicyError(
                f"policy {self.version}: no rule without `applies` opens on {missing}; a "
                "complaint entering that situation would wait with no limit running"
            )

    @cached_property
    def limit_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(rule.name for rule in self.document.limit))

    def selecting_on(self, fact: str) -> list[str]:
        """The limits some rule of which selects on `fact` (those an assignment, which learns
        the complexity, chooses again)."""
        return [
            name
            for name in self.limit_names
            if any(r.name == name and fact in r.applies for r in self.document.limit)
        ]

    def latest_extension(self, first_due: datetime) -> datetime:
        """How late an extension may set the investigation limit first due at `first_due`."""
        return self.due_at(self.document.extension.max, first_due)

    def rules_for(self, facts: Mapping[str, str | None]) -> list[tuple[LimitRule, list[LimitRule]]]:
        """For each limit name: the rule that applies to these facts, and the caps that match.

        The most specific matching rule wins (the one naming the most facts); among equally
        specific rules the shortest wins. Matching caps can then only shorten it.
        """
        chosen = []
        for name in self.limit_names:
            matching = [r for r in self.document.limit if r.name == name and r.matches(facts)]
            rules = [r for r in matching if not r.cap]
            if rules:
                best = max(rules, key=lambda r: (len(r.applies), -self._nominal_hours(r)))
                chosen.append((best, [r for r in matching if r.cap]))
        return chosen

    @staticmethod
    def _nominal_hours(rule: LimitRule) -> float:
        per_unit = {Unit.HOURS: 1.0, Unit.CALENDAR_DAYS: 24.0, Unit.WORKING_DAYS: 24 * 7 / 5}
        return rule.amount * per_unit[rule.unit]

    def due_at(self, rule: LimitRule | Span, start: datetime) -> datetime:
        if start.tzinfo is None:
            raise ValueError("deadline start must be timezone-aware")
        if rule.unit is Unit.HOURS:
            return (start + timedelta(hours=rule.amount)).astimezone(UTC)
        if rule.unit is Unit.CALENDAR_DAYS:
            return (start + timedelta(days=rule.amount)).astimezone(UTC)
        return self.calendar.add_working_days(start, int(rule.amount))

    def deadlines(
        self,
        facts: Mapping[str, str | None],
        *,
        accepted_at: datetime,
        received_at: datetime | None = None,
        only: Iterable[str] | None = None,
        opening: Opening = Opening.ACCEPTED,
    ) -> list[dict[str, Any]]:
        """The deadlines that start to run for a complaint with these facts when it enters
        `opening` at `accepted_at` (for other openings than acceptance: the moment it
        entered it).

        Returned as plain dicts because they are stored inside events as they are.
        """
        wanted = set(only) if only is not None else None
        result = []
        for base, caps in self.rules_for(facts):
            if base.opens_on is not opening or (wanted is not None and base.name not in wanted):
                continue
            candidates = []
            for rule in (base, *caps):
                start = received_at if rule.start is Start.RECEIVED and received_at else accepted_at
                candidates.append((self.due_at(rule, start), rule, start))
            due, rule, start = min(candidates, key=lambda c: c[0])
            calendar = (
                self.calendar.counted(start, due)
                if rule.unit is Unit.WORKING_DAYS
                else Calendar.OFFICIAL
            )
            result.append(
                {
                    "name": rule.name,
                    "opened_by": opening.value,
                    "bound_to": bound.value if (bound := BOUND.get(opening)) else None,
                    "level": facts.get("level"),
                    "starts_at": start.astimezone(UTC).isoformat(),
                    "due_at": due.isoformat(),
                    "amount": rule.amount,
                    "unit": rule.unit.value,
                    # A cap only shortens the limit: what meets it, its target and whether
                    # it stands still while paused are still the rule's.
                    "met_by": list(base.met_by),
                    "target": base.target,
                    "pausable": base.pausable,
                    "source": rule.source
                    if rule is base
                    else f"{base.source}; shortened by a cap: {rule.source}",
                    "policy_version": self.version,
                    "calendar": calendar.value,
                }
            )
        return result

    def alert_follow_up(self, missed: Mapping[str, Any], at: datetime) -> dict[str, Any]:
        """The limit that runs again after a passed one alerted headquarters' supervisors: the
        same name, meeting events and target, due `alert_repeat` from the alert."""
        repeat = self.document.escalation.alert_repeat
        due = self.due_at(repeat, at)
        return {
            **{
                k: missed.get(k)
                for k in ("name", "opened_by", "bound_to", "level", "met_by", "target")
            },
            "pausable": bool(missed.get("pausable")),
            "starts_at": at.astimezone(UTC).isoformat(),
            "due_at": due.isoformat(),
            "amount": repeat.amount,
            "unit": repeat.unit.value,
            "source": self.document.escalation.alert_source,
            "policy_version": self.version,
            "calendar": (
                self.calendar.counted(at, due)
                if repeat.unit is Unit.WORKING_DAYS
                else Calendar.OFFICIAL
            ).value,
            "follows": missed.get("key", missed["name"]),
        }

    def is_time_barred(self, category: str, occurred_at: datetime, now: datetime) -> bool:
        """Past the limitation period: fee disputes after 5 months, others after 2 years,
        counted in the policy's calendar months (Beijing's, whatever offset the times carry)."""
        limits = self.document.limitation
        months = limits.fee_months if category in limits.fee_categories else limits.other_months
        local_now = now.astimezone(self.tz)
        return occurred_at.astimezone(self.tz) < local_now - relativedelta(months=months)


def facts_of(
    *,
    channel: str,
    business_type: BusinessType | str,
    category: Category | str,
    vip_tier: str | None,
    area: str | None,
    complexity: str | None = None,
    level: str | None = None,
) -> dict[str, str | None]:
    """The selection facts as plain strings, in the shape `LimitRule.matches` reads."""
    return {
        "channel": str(channel),
        "business_type": str(business_type),
        "category": str(category),
        "vip_tier": vip_tier,
        "area": area,
        "complexity": complexity,
        "level": level,
    }


def facts_of_intake(
    intake: Mapping[str, Any], complexity: str | None = None, level: str | None = None
) -> dict[str, str | None]:
    """The selection facts of a complaint as intake recorded it."""
    return facts_of(
        channel=intake["channel"],
        business_type=intake["business_type"],
        category=intake["category"],
        vip_tier=intake["customer"].get("vip_tier"),
        area=intake.get("area"),
        complexity=complexity,
        level=level,
    )


def load_policies(directory: Path, current: Policy) -> dict[str, Policy]:
    """The policy versions a report may re-analyse under: every `*.toml` in `directory` and the
    one in force, by version. Two files may not give one version different rules."""
    found = {current.version: current}
    for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
        policy = Policy.load(path)
        known = found.setdefault(policy.version, policy)
        if known.document != policy.document:
            raise PolicyError(f"{path} gives policy version {policy.version!r} other rules")
    return found
