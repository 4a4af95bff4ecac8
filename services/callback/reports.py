"""Improvement reports (分析改进): what a period's complaints were about, how well each time
limit was kept against its target, how many came back and how satisfied the customers were.

Built from the `complaint_analysis` read model for any past period (complaints accepted in
[from, to)). A limit counts as met or missed once decided; one still running, or closed before
it was due, is counted apart and left out of the on-time rate. Refused complaints are counted
on their own and out of every on-time figure. Each group of the accountability table (考核: per
investigator, department, area, channel and level) is held to its targets the same way. With
another policy version, the same complaints' timelines are re-assessed under its rules
(shared.domain.deadlines.reassess) and shown beside the rules that applied at the time.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.domain.codes import DeadlineState, Satisfaction
from shared.domain.deadlines import Book, is_regulators, reassess, state
from shared.domain.lifecycle import Opening
from shared.domain.policy import Policy, facts_of
from shared.readmodel.tables import complaint_analysis
from shared.readmodel.times import to_utc

#: The dimensions complaints are counted by, and the name of a missing value in each.
DIMENSIONS = {
    "category": "other",
    "root_cause": "not_recorded",
    "department": "unassigned",
    "channel": "unknown",
    "business_type": "unknown",
    "vip_tier": "none",
    "status": "unknown",
}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# ------------------------------------------------------------------ response models
class Period(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")


class RepeatRate(BaseModel):
    complaints: int
    repeats: int = Field(description="complaints linked to an earlier one of the same thread")
    rate: float | None


class Satisfactions(BaseModel):
    callbacks: int = Field(description="complaints whose last callback reached the customer")
    satisfied: int
    basically_satisfied: int
    dissatisfied: int
    satisfaction_rate: float | None = Field(description="satisfied or basically satisfied")
    resolved_rate: float | None = Field(description="customer says the problem is solved")
    unreached_attempts: int = Field(description="callback attempts that reached nobody")


class OnTime(BaseModel):
    """Deadlines of one group: decided ones count towards the rate, running ones do not."""

    met: int
    missed: int
    running: int
    closed: int = Field(
        description="closed before they were due without their event (refused, archived, "
        "or the step they asked for was left): not in the rate"
    )
    on_time_rate: float | None = Field(description="met / (met + missed)")
    target: float | None = Field(description="the share to be met on time (mean if mixed)")
    gap: float | None = Field(description="on_time_rate - target; negative is below target")


class OnTimeWithExtensions(OnTime):
    extended: int = Field(
        description="of these limits, how many an extension moved (judged by the new date)"
    )


class RuleOnTime(OnTimeWithExtensions):
    limit: str
    rule: str = Field(examples=["2 working_days"])
    source: str


class LimitOnTime(OnTimeWithExtensions):
    limit: str


class GroupOnTime(OnTime):
    group: str


class WeakestLinks(BaseModel):
    """Departments and categories below target, the furthest below first."""

    departments: list[GroupOnTime]
    categories: list[GroupOnTime]


class Accountability(BaseModel):
    """考核 (seed 004): every group's on-time rate against its target, the furthest below first.
    An investigator and a department answer for the handling's limits of the complaints
    assigned to them (investigation, reply, resolution, repair, the operator's answer, and
    those a review reopened); area and channel for every limit of their complaints; a level
    for the limits that ran at it."""

    investigator: list[GroupOnTime]
    department: list[GroupOnTime]
    area: list[GroupOnTime]
    channel: list[GroupOnTime]
    level: list[GroupOnTime]


class TimeLimits(BaseModel):
    policy_versions: list[str] = Field(description="the policy versions that set these limits")
    rules: list[RuleOnTime]
    limits: list[LimitOnTime]
    weakest_links: WeakestLinks
    accountability: Accountability


class EscalationCount(BaseModel):
    trigger: str = Field(examples=["customer_dissatisfied"])
    level: str = Field(description="the level the complaint went up to", examples=["provincial"])
    escalations: int


class Escalations(BaseModel):
    """Every escalation of the period's complaints (one complaint may go up more than once): by
    what set it off and the level it went up to. `unknown` is the trigger of an escalation
    recorded before triggers were kept on the timeline."""

    total: int
    by_trigger: dict[str, int]
    by_level: dict[str, int]
    by_trigger_and_level: list[EscalationCount]


class Refused(BaseModel):
    """Complaints not accepted (不予受理): counted here, in no on-time figure."""

    complaints: int
    by_reason: dict[str, int]


class Extensions(BaseModel):
    complaints: int = Field(description="complaints whose investigation was extended")
    limits: int = Field(description="limits an extension moved (see `extended` per limit)")


class AverageTime(BaseModel):
    """A report figure of the standards: the average time complaints took to meet a limit."""

    group: str = Field(examples=["broadband, towns"])
    limit: str = Field(examples=["repair"])
    complaints: int = Field(description="complaints whose limit was met (late or not)")
    unfinished: int = Field(description="complaints of the group whose limit is not met yet")
    average_hours: float | None
    target_hours: float
    within_target: bool | None
    source: str


class Comparison(BaseModel):
    limit: str
    applied: float | None = Field(description="on-time rate under the rules that applied")
    reanalysed: float | None = Field(description="on-time rate under the other policy")
    change: float | None


class Reanalysis(BaseModel):
    policy: str = Field(description="the policy version the period is re-assessed under")
    time_limits: TimeLimits
    comparison: list[Comparison]


class ImprovementReport(BaseModel):
    period: Period
    generated_at: datetime
    complaints: int
    counts: dict[str, dict[str, int]] = Field(description="complaints by " + ", ".join(DIMENSIONS))
    repeat_rate: RepeatRate
    escalated: int = Field(description="complaints escalated at least once")
    escalations: Escalations
    refused: Refused
    extensions: Extensions
    satisfaction: Satisfactions
    time_limits: TimeLimits
    averages: list[AverageTime]
    reanalysis: Reanalysis | None = None


# ------------------------------------------------------------------ tallies
@dataclass
class Tally:
    met: int = 0
    missed: int = 0
    running: int = 0
    closed: int = 0
    extended: int = 0
    decided_targets: float = 0.0
    running_targets: float = 0.0

    def add(self, state: DeadlineState, target: float, *, extended: bool = False) -> None:
        self.extended += extended
        if state is DeadlineState.RUNNING:
            self.running += 1
            self.running_targets += target
            return
        if state is DeadlineState.CLOSED:
            self.closed += 1
            return
        self.decided_targets += target
        if state is DeadlineState.MET:
            self.met += 1
        else:
            self.missed += 1

    @property
    def gap(self) -> float | None:
        """On-time rate minus target over the decided deadlines, before any rounding."""
        decided = self.met + self.missed
        return (self.met - self.decided_targets) / decided if decided else None

    def figures(self, *, extended: bool = False) -> dict[str, Any]:
        """The rate is over the decided deadlines, and so is the target they are held to (the
        running ones' target while none is decided)."""
        decided = self.met + self.missed
        if decided:
            target: float | None = self.decided_targets / decided
        else:
            target = self.running_targets / self.running if self.running else None
        return {
            "met": self.met,
            "missed": self.missed,
            "running": self.running,
            "closed": self.closed,
            "on_time_rate": _rate(self.met, decided),
            "target": round(target, 4) if target is not None else None,
            "gap": round(self.gap, 4) if self.gap is not None else None,
            **({"extended": self.extended} if extended else {}),
        }


def _rule(deadline: Mapping[str, Any]) -> tuple[str, str, str, float]:
    if deadline.get("policy_version") is None:  # not from the policy: a regulator's deadline
        return deadline["name"], "regulator's deadline", "set by the regulator", 1.0
    amount = deadline["amount"]
    shown = int(amount) if float(amount).is_integer() else amount
    return (
        deadline["name"],
        f"{shown} {deadline['unit']}",
        deadline.get("source") or "",
        float(deadline["target"]),
    )


def _ranked(tallies: Mapping[str, Tally], *, below_only: bool) -> list[GroupOnTime]:
    """Groups by gap to target, the furthest below first (those with nothing decided last);
    with `below_only`, only those below their target."""
    ranked = []
    for group, tally in tallies.items():
        gap = tally.gap
        if below_only and (gap is None or gap >= 0):
            continue
        ranked.append((gap if gap is not None else float("inf"), -tally.missed, group, tally))
    ranked.sort(key=lambda item: item[:3])
    return [GroupOnTime(group=group, **tally.figures()) for *_, group, tally in ranked]


#: The accountability table's dimensions (考核), and the name of a missing value in each.
ACCOUNTABLE = {
    "investigator": "unassigned",
    "department": "unassigned",
    "area": "unknown",
    "channel": "unknown",
    "level": "unknown",
}


#: Dimensions held to account only for the handling's limits: those of the investigation
#: and the reply, opened at acceptance or when a review sent the complaint back.
HANDLERS = ("investigator", "department")


def _is_handling(deadline: Mapping[str, Any]) -> bool:
    return (
        deadline.get("opened_by", Opening.ACCEPTED) in (Opening.ACCEPTED, Opening.REOPENED)
        and "Accepted" not in deadline["met_by"]  # the intake desk's acceptance limit
        and not is_regulators(deadline)  # headquarters' answer to the regulator
    )


def time_limits(assessed: Iterable[tuple[Mapping[str, Any], Book]], now: datetime) -> TimeLimits:
    """On-time figures of the deadlines in `assessed` (a complaint's row and its deadlines)."""
    rules: dict[tuple[str, str, str, float], Tally] = defaultdict(Tally)
    limits: dict[str, Tally] = defaultdict(Tally)
    categories: dict[str, Tally] = defaultdict(Tally)
    departments: dict[str, Tally] = defaultdict(Tally)
    groups: dict[str, dict[str, Tally]] = {name: defaultdict(Tally) for name in ACCOUNTABLE}
    versions: set[str] = set()
    for row, book in assessed:
        for deadline in book.values():
            # A paused clock stands still: its pausable limits are not due meanwhile.
            decided = state(deadline, now, paused=row["paused"])
            target = float(deadline["target"])
            extended = bool(deadline.get("original_due_at"))
            for tally in (rules[_rule(deadline)], limits[deadline["name"]]):
                tally.add(decided, target, extended=extended)
            categories[row["category"]].add(decided, target)
            departments[row["department"] or DIMENSIONS["department"]].add(decided, target)
            handling = _is_handling(deadline)
            # A limit counts for the level it ran at (the complaint's own before levels
            # were recorded on limits).
            facts = {**row, "level": deadline.get("level") or row["level"]}
            for name, missing in ACCOUNTABLE.items():
                if name in HANDLERS and not handling:
                    continue  # not theirs: the intake desk's, a level's, a callback agent's
                groups[name][facts[name] or missing].add(decided, target)
            if deadline.get("policy_version"):
                versions.add(deadline["policy_version"])
    return TimeLimits(
        policy_versions=sorted(versions),
        rules=[
            RuleOnTime(limit=limit, rule=rule, source=source, **tally.figures(extended=True))
            for (limit, rule, source, _), tally in sorted(rules.items())
        ],
        limits=[
            LimitOnTime(limit=name, **tally.figures(extended=True))
            for name, tally in sorted(limits.items())
        ],
        weakest_links=WeakestLinks(
            departments=_ranked(departments, below_only=True),
            categories=_ranked(categories, below_only=True),
        ),
        accountability=Accountability(
            **{name: _ranked(tallies, below_only=False) for name, tallies in groups.items()}
        ),
    )


def _escalations(rows: Iterable[Mapping[str, Any]]) -> Escalations:
    """The escalations on the complaints' timelines (a refused complaint's appeal too)."""
    pairs = Counter(
        (step.get("trigger") or "unknown", step["level"])
        for row in rows
        for step in row["timeline"]
        if step["event"] == "Escalated"
    )
    by_trigger: Counter[str] = Counter()
    by_level: Counter[str] = Counter()
    for (trigger, level), count in pairs.items():
        by_trigger[trigger] += count
        by_level[level] += count
    return Escalations(
        total=sum(pairs.values()),
        by_trigger=dict(sorted(by_trigger.items())),
        by_level=dict(sorted(by_level.items())),
        by_trigger_and_level=[
            EscalationCount(trigger=trigger, level=level, escalations=count)
            for (trigger, level), count in sorted(pairs.items())
        ],
    )


def _averages(rows: Iterable[Mapping[str, Any]], policy: Policy) -> list[AverageTime]:
    """seed 004's averages: how long the complaints of each group took to meet the limit."""
    figures = []
    for figure in policy.document.average:
        hours, unfinished = [], 0
        for row in rows:
            if not figure.matches(_facts(row)):
                continue
            for deadline in row["deadlines"]:
                if deadline["name"] != figure.limit:
                    continue
                if deadline.get("met_at"):
                    took = datetime.fromisoformat(deadline["met_at"]) - datetime.fromisoformat(
                        deadline["starts_at"]
                    )
                    hours.append(took.total_seconds() / 3600)
                elif not deadline.get("closed_at"):
                    unfinished += 1
        average = round(sum(hours) / len(hours), 2) if hours else None
        figures.append(
            AverageTime(
                group=figure.group,
                limit=figure.limit,
                complaints=len(hours),
                unfinished=unfinished,
                average_hours=average,
                target_hours=figure.hours,
                within_target=average <= figure.hours if average is not None else None,
                source=figure.source,
            )
        )
    return figures


def _facts(row: Mapping[str, Any]) -> dict[str, str | None]:
    return facts_of(
        channel=row["channel"],
        business_type=row["business_type"],
        category=row["category"],
        vip_tier=row["vip_tier"],
        area=row["area"],
        complexity=row["complexity"],
    )


def _reassessed(
    rows: Iterable[Mapping[str, Any]], policy: Policy
) -> Iterator[tuple[Mapping[str, Any], Book]]:
    for row in rows:
        yield row, reassess(policy, {**_facts(row), "complexity": None}, row["timeline"])


def _change(before: float | None, after: float | None) -> float | None:
    return round(after - before, 4) if before is not None and after is not None else None


def build_report(
    rows: list[Mapping[str, Any]],
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    policy: Policy,
    under: Policy | None = None,
) -> ImprovementReport:
    """The report over `rows`; `policy` is the one in force (its average figures), `under`
    another version to re-assess the same complaints under."""
    counts = {
        dimension: dict(sorted(Counter(row[dimension] or missing for row in rows).items()))
        for dimension, missing in DIMENSIONS.items()
    }
    answered = [row for row in rows if row["satisfaction"] is not None]
    said = Counter(row["satisfaction"] for row in answered)
    content = said[Satisfaction.SATISFIED] + said[Satisfaction.BASICALLY_SATISFIED]
    repeats = sum(1 for row in rows if row["repeat"])
    accepted = [row for row in rows if not row["refusal_reason"]]
    applied = time_limits(
        ((row, {d.get("key") or d["name"]: d for d in row["deadlines"]}) for row in accepted), now
    )
    moved = [[d for d in row["deadlines"] if d.get("original_due_at")] for row in accepted]
    report = ImprovementReport(
        period=Period(start=start, end=end),
        generated_at=now,
        complaints=len(rows),
        counts=counts,
        repeat_rate=RepeatRate(
            complaints=len(rows), repeats=repeats, rate=_rate(repeats, len(rows))
        ),
        escalated=sum(1 for row in rows if row["escalations"]),
        escalations=_escalations(rows),
        refused=Refused(
            complaints=len(rows) - len(accepted),
            by_reason=dict(
                sorted(Counter(r["refusal_reason"] for r in rows if r["refusal_reason"]).items())
            ),
        ),
        extensions=Extensions(
            complaints=sum(1 for limits in moved if limits),
            limits=sum(len(limits) for limits in moved),
        ),
        satisfaction=Satisfactions(
            callbacks=len(answered),
            satisfied=said[Satisfaction.SATISFIED],
            basically_satisfied=said[Satisfaction.BASICALLY_SATISFIED],
            dissatisfied=said[Satisfaction.DISSATISFIED],
            satisfaction_rate=_rate(content, len(answered)),
            resolved_rate=_rate(sum(1 for row in answered if row["resolved"]), len(answered)),
            unreached_attempts=sum(row["unreached_callbacks"] for row in rows),
        ),
        time_limits=applied,
        averages=_averages(accepted, policy),
    )
    if under is not None:
        other = time_limits(_reassessed(accepted, under), now)
        before = {limit.limit: limit.on_time_rate for limit in applied.limits}
        after = {limit.limit: limit.on_time_rate for limit in other.limits}
        report.reanalysis = Reanalysis(
            policy=under.version,
            time_limits=other,
            comparison=[
                Comparison(
                    limit=name,
                    applied=before.get(name),
                    reanalysed=after.get(name),
                    change=_change(before.get(name), after.get(name)),
                )
                for name in sorted(before.keys() | after.keys())
            ],
        )
    return report


async def load_rows(engine: AsyncEngine, start: datetime, end: datetime) -> list[Mapping[str, Any]]:
    """The analysis rows of the complaints accepted in [start, end)."""
    a = complaint_analysis
    query = (
        select(a)
        .where(a.c.accepted_at >= to_utc(start), a.c.accepted_at < to_utc(end))
        .order_by(a.c.accepted_at, a.c.complaint_id)
    )
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings()]


# ------------------------------------------------------------------ CSV
CSV_COLUMNS = ("policy", "section", "group", "key", "metric", "value")


def _time_limit_lines(policy: str, limits: TimeLimits) -> Iterator[tuple[Any, ...]]:
    figures = ("met", "missed", "running", "closed", "on_time_rate", "target", "gap")
    extended = (*figures, "extended")
    for rule in limits.rules:
        key = "; ".join(part for part in (rule.rule, f"target {rule.target}", rule.source) if part)
        for metric in extended:
            yield (
                policy,
                "rule",
                rule.limit,
                key,
                metric,
                getattr(rule, metric),
            )
    for limit in limits.limits:
        for metric in extended:
            yield policy, "limit", limit.limit, "", metric, getattr(limit, metric)
    for section, groups in (
        ("weakest_department", limits.weakest_links.departments),
        ("weakest_category", limits.weakest_links.categories),
        *((f"accountability_{name}", getattr(limits.accountability, name)) for name in ACCOUNTABLE),
    ):
        for group in groups:
            for metric in figures:
                yield policy, section, group.group, "", metric, getattr(group, metric)


class _SafeWriter:
    """A CSV writer that keeps staff-typed text (department, root cause) from being read as a
    formula by a spreadsheet (CSV injection)."""

    def __init__(self, out: io.StringIO) -> None:
        self._writer = csv.writer(out, lineterminator="\r\n")

    @staticmethod
    def _cell(value: Any) -> Any:
        if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            return "'" + value
        return value

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([self._cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def to_csv(report: ImprovementReport) -> str:
    """The report as one long table: one figure per line, for a spreadsheet's pivot table."""
    out = io.StringIO()
    writer = _SafeWriter(out)
    writer.writerow(CSV_COLUMNS)
    period = f"{report.period.start.isoformat()}/{report.period.end.isoformat()}"
    writer.writerow(("applied", "period", "", period, "complaints", report.complaints))
    for dimension, values in report.counts.items():
        for key, count in values.items():
            writer.writerow(("applied", "count", dimension, key, "complaints", count))
    for metric, value in report.repeat_rate.model_dump().items():
        writer.writerow(("applied", "repeat_rate", "", "", metric, value))
    writer.writerow(("applied", "escalated", "", "", "complaints", report.escalated))
    escalations = report.escalations
    writer.writerow(("applied", "escalations", "", "", "escalations", escalations.total))
    for trigger, count in escalations.by_trigger.items():
        writer.writerow(("applied", "escalations", "trigger", trigger, "escalations", count))
    for level, count in escalations.by_level.items():
        writer.writerow(("applied", "escalations", "level", level, "escalations", count))
    for pair in escalations.by_trigger_and_level:
        key = f"{pair.trigger}/{pair.level}"
        writer.writerow(
            ("applied", "escalations", "trigger/level", key, "escalations", pair.escalations)
        )
    writer.writerow(("applied", "refused", "", "", "complaints", report.refused.complaints))
    for reason, count in report.refused.by_reason.items():
        writer.writerow(("applied", "refused", "reason", reason, "complaints", count))
    for metric, value in report.extensions.model_dump().items():
        writer.writerow(("applied", "extensions", "", "", metric, value))
    for average in report.averages:
        for metric in ("complaints", "unfinished", "average_hours", "target_hours"):
            value = getattr(average, metric)
            writer.writerow(("applied", "average", average.limit, average.group, metric, value))
    for metric, value in report.satisfaction.model_dump().items():
        writer.writerow(("applied", "satisfaction", "", "", metric, value))
    writer.writerows(_time_limit_lines("applied", report.time_limits))
    if report.reanalysis is not None:
        version = report.reanalysis.policy
        writer.writerows(_time_limit_lines(version, report.reanalysis.time_limits))
        for row in report.reanalysis.comparison:
            for metric in ("applied", "reanalysed", "change"):
                writer.writerow(
                    (version, "comparison", row.limit, "", metric, getattr(row, metric))
                )
    return out.getvalue()
