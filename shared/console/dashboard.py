"""The SLA dashboard (`/console/dashboard`): the improvement report of a period, as charts with
their exact figures a click away and the report's CSV a link away.

Everything comes from `GET /reports/improvement` (the callback service), called with the
signed-in user's token: the report of the whole period, and one report per week of it for the
on-time rates week by week (each week's complaints, their limits judged as they stand now; the
latest WEEKLY_MAX weeks, CONCURRENT_REPORTS reports asked at once). The period is judged in
shared/console/periods.py. The API decides who may read it; the page shows its answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from markupsafe import Markup

from shared.console import session
from shared.console.charts import Bar, bars, columns, exact_percent
from shared.console.client import Answer, Api
from shared.console.i18n import Translator
from shared.console.pages import Viewer, policy_versions, streamed
from shared.console.periods import Period, period_asked
from shared.http.routes import REPORT

router = APIRouter(prefix=session.PREFIX, include_in_schema=False)

#: The period shown when none is asked for: the last eight weeks, today included.
DEFAULT_WEEKS = 8
#: The longest period the page shows (a year's weeks).
MAX_DAYS = 53 * 7
#: The most weeks drawn week by week (one report each): the period's latest; the page says so
#: when the period has more.
WEEKLY_MAX = 26
#: How many of the weeks' reports are asked for at once.
CONCURRENT_REPORTS = 4
#: The accountability table's groups the page shows (the report has channel and level too).
ACCOUNTABLE = ("investigator", "department", "area")
#: How each group's value is labelled (the API's code), by the dimension it belongs to.
GROUP_CODES = {"category": "category", "area": "area", "level": "level"}

#: A week's first and last days and its report.
Weekly = list[tuple[date, date, dict[str, Any]]]


@dataclass
class Figure:
    """A chart and the table of its exact figures."""

    id: str
    title: str
    chart: Markup | None
    head: list[str]
    rows: list[list[Any]]
    note: str = ""


@dataclass
class Section:
    id: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    summary: list[tuple[str, str]] = field(default_factory=list)


#: The period asked for (dates `from` and `to`, both included), by default the last eight
#: weeks, at most MAX_DAYS. (A query parameter the page does not read is ignored, as by every
#: page.)
AskedPeriod = Annotated[
    Period, Depends(period_asked(default_days=DEFAULT_WEEKS * 7, max_days=MAX_DAYS))
]


async def _reports(api: Api, periods: list[Period], under: str | None = None) -> list[Answer]:
    """The improvement report of each period, at most CONCURRENT_REPORTS asked at once; the
    first (the whole period) re-analysed `under` another policy version too, if one is named."""
    service, path = REPORT
    gate = asyncio.Semaphore(CONCURRENT_REPORTS)

    async def one(period: Period, also: list[tuple[str, str]]) -> Answer:
        async with gate:
            return await api.get(path, [*period.params(), *also], service)

    again = [("policy", under)] if under else []
    first, *rest = periods
    return list(await asyncio.gather(one(first, again), *(one(p, []) for p in rest)))


def report_versions(report: dict[str, Any]) -> list[str]:
    """The policy versions that set the report's limits (nothing to compare them with)."""
    versions: list[str] = report["time_limits"].get("policy_versions", [])
    return versions


#: Another policy version to re-analyse the period under (the report's `?policy=`), if any.
Under = Annotated[str | None, Query(alias="policy", max_length=64)]


@router.get("/dashboard")
async def dashboard(
    request: Request, user: Viewer, period: AskedPeriod, under: Under = None
) -> Response:
    t = user.t
    weeks = period.weeks()
    shown = weeks[-WEEKLY_MAX:]
    under = under or None
    whole, *each = await _reports(user.api, [period, *shown], under)
    for answer in [whole, *each]:  # a signed-out session first, then the first refusal
        user.current(answer)
    for answer in [whole, *each]:
        user.ok(answer, forbidden=True)
    weekly = [
        (week.first, week.last, answer.body) for week, answer in zip(shown, each, strict=True)
    ]
    report = whole.body
    return user.page(
        "dashboard.html",
        period=period,
        report=report,
        policies=[v for v in policy_versions(request) if v not in report_versions(report)],
        under=under or "",
        csv_query=period.query() + (f"&policy={quote(under)}" if under else ""),
        weekly_note=(
            t("dashboard.weekly_capped").format(weeks=len(shown), first=shown[0].first.isoformat())
            if len(weeks) > len(shown)
            else ""
        ),
        sections=sections(report, weekly, t),
    )


@router.get("/dashboard.csv")
async def dashboard_csv(user: Viewer, period: AskedPeriod, under: Under = None) -> Response:
    """The period's report as CSV, as the API gives it (its file name too); with its
    re-analysis under another policy version when one is named."""
    service, path = REPORT
    again = [("policy", under)] if under else []
    csv = await user.api.stream(path, [*period.params(), *again, ("format", "csv")], service)
    stream = user.ok_stream(csv, forbidden=True)
    disposition = stream.response.headers.get("content-disposition")
    return streamed(
        stream,
        {"Content-Disposition": disposition} if disposition else {},
        media_type="text/csv; charset=utf-8",
    )


# -- the figures ---------------------------------------------------------------------------------


def sections(report: dict[str, Any], weekly: Weekly, t: Translator) -> list[Section]:
    limits = report["time_limits"]
    again = [_reanalysis(report["reanalysis"], t)] if report.get("reanalysis") else []
    return [
        _on_time(limits["rules"], weekly, t),
        *again,
        _weakest(limits["weakest_links"], t),
        _escalations(report["escalations"], report["escalated"], t),
        _satisfaction(report["satisfaction"], t),
        Section(
            "accountability",
            t("dashboard.accountability"),
            [
                _groups(
                    f"accountability-{name}",
                    t(f"dashboard.by_{name}"),
                    limits["accountability"][name],
                    name,
                    t,
                )
                for name in ACCOUNTABLE
            ],
        ),
    ]


def _bar_figure(
    chart_id: str,
    title: str,
    shown: list[Bar],
    head: list[str],
    rows: list[list[Any]],
    t: Translator,
    *,
    rates: bool = True,
) -> Figure:
    """A chart of bars (rates, or counts) and its table; with no bar to draw, no chart and a
    note that says so."""
    chart = bars(f"chart-{chart_id}", title, shown, rates=rates) if shown else None
    return Figure(chart_id, title, chart, head, rows, note="" if shown else t("dashboard.empty"))


def _reanalysis(reanalysis: dict[str, Any], t: Translator) -> Section:
    """Each limit's on-time rate under the rules that applied and under the other version."""
    version = reanalysis["policy"]
    shown = [
        Bar(f"{t.code('limit', row['limit'])} · {label}", row[key])
        for row in reanalysis["comparison"]
        for key, label in (("applied", t("dashboard.applied")), ("reanalysed", version))
    ]
    rows = [
        [
            t.code("limit", row["limit"]),
            exact_percent(row["applied"]),
            exact_percent(row["reanalysed"]),
            exact_percent(row["change"]),
        ]
        for row in reanalysis["comparison"]
    ]
    head = [
        t("dashboard.col.limit"),
        t("dashboard.applied"),
        version,
        t("dashboard.col.change"),
    ]
    title = t("dashboard.reanalysis").format(version=version)
    return Section(
        "reanalysis",
        title,
        [_bar_figure("reanalysis-comparison", title, shown, head, rows, t)],
    )


def _rule_key(rule: dict[str, Any]) -> tuple[str, str, str]:
    return rule["limit"], rule["rule"], rule["source"]


def _rule_label(rule: dict[str, Any], t: Translator) -> str:
    return f"{t.code('limit', rule['limit'])} · {rule['rule']}"


def _figures(row: dict[str, Any]) -> list[Any]:
    return [
        row["met"],
        row["missed"],
        row["running"],
        row["closed"],
        exact_percent(row["on_time_rate"]),
        exact_percent(row["target"]),
        exact_percent(row["gap"]),
    ]


def _figure_head(t: Translator) -> list[str]:
    return [
        t(f"dashboard.col.{name}")
        for name in ("met", "missed", "running", "closed", "rate", "target", "gap")
    ]


def _on_time(rules: list[dict[str, Any]], weekly: Weekly, t: Translator) -> Section:
    """Every rule's on-time rate against its target over the period, then week by week for
    each rule with a limit met or missed (one only running or closed has no rate to show)."""
    shown = [rule for rule in rules if rule["met"] + rule["missed"] + rule["running"]]
    overall = _bar_figure(
        "on-time-rules",
        t("dashboard.on_time"),
        [Bar(_rule_label(r, t), r["on_time_rate"], r["target"]) for r in shown],
        [
            t("dashboard.col.limit"),
            t("dashboard.col.rule"),
            t("dashboard.col.source"),
            *_figure_head(t),
            t("dashboard.col.extended"),
        ],
        [
            [t.code("limit", r["limit"]), r["rule"], r["source"], *_figures(r), r["extended"]]
            for r in rules
        ],
        t,
    )
    figures = [overall]
    decided = [rule for rule in shown if rule["met"] + rule["missed"]]
    for number, rule in enumerate(decided, start=1):
        week_rows = []
        columns_shown = []
        for first, last, body in weekly:
            found = {_rule_key(r): r for r in body["time_limits"]["rules"]}.get(_rule_key(rule))
            label = first.strftime("%m-%d")
            columns_shown.append(Bar(label, found["on_time_rate"] if found else None))
            week_rows.append(
                [f"{first.isoformat()} – {last.isoformat()}", *_figures(found)]
                if found
                else [f"{first.isoformat()} – {last.isoformat()}", *["—"] * 7]
            )
        title = f"{t('dashboard.weekly')}: {_rule_label(rule, t)}"
        figures.append(
            Figure(
                f"weekly-{number}",
                title,
                columns(
                    f"chart-weekly-{number}",
                    title,
                    columns_shown,
                    target=rule["target"],
                    target_label=t("dashboard.target"),
                ),
                [t("dashboard.col.week"), *_figure_head(t)],
                week_rows,
                note=rule["source"],
            )
        )
    return Section("on-time", t("dashboard.on_time_title"), figures)


def _group_label(dimension: str, group: str, t: Translator) -> str:
    kind = GROUP_CODES.get(dimension)
    labelled = t.code(kind, group) if kind else group
    return labelled if labelled != group else t.code("group", group)


def _groups(
    chart_id: str, title: str, groups: list[dict[str, Any]], dimension: str, t: Translator
) -> Figure:
    """Groups' on-time rates against their targets, the furthest below first (the report's
    order)."""
    labels = [_group_label(dimension, g["group"], t) for g in groups]
    labelled = list(zip(labels, groups, strict=True))
    return _bar_figure(
        chart_id,
        title,
        [Bar(label, g["on_time_rate"], g["target"]) for label, g in labelled],
        [t("dashboard.col.group"), *_figure_head(t)],
        [[label, *_figures(g)] for label, g in labelled],
        t,
    )


def _weakest(links: dict[str, Any], t: Translator) -> Section:
    figures = [
        _groups("weakest-departments", t("dashboard.weakest_departments"),
                links["departments"], "department", t),
        _groups("weakest-categories", t("dashboard.weakest_categories"),
                links["categories"], "category", t),
    ]  # fmt: skip
    for figure in figures:
        if not figure.rows:
            figure.note = t("dashboard.none_below")
    return Section("weakest", t("dashboard.weakest"), figures)


def _counts(
    chart_id: str,
    title: str,
    counts: dict[str, int],
    kind: str,
    t: Translator,
    table: tuple[list[str], list[list[Any]]] | None = None,
) -> Figure:
    """A chart of counts by code; under it their table, or `table` (head, rows) if given."""
    labels = {code: t.code(kind, code) for code in counts}
    head, rows = table or (
        [t(f"dashboard.col.{kind}"), t("dashboard.col.count")],
        [[labels[code], n] for code, n in counts.items()],
    )
    return _bar_figure(
        chart_id,
        title,
        [Bar(labels[code], float(n), shown=str(n)) for code, n in counts.items()],
        head,
        rows,
        t,
        rates=False,
    )


def _escalations(escalations: dict[str, Any], escalated: int, t: Translator) -> Section:
    # The table under the triggers' chart: each trigger by the level it went up to.
    by_trigger_and_level = (
        [t("dashboard.col.trigger"), t("dashboard.col.level"), t("dashboard.col.count")],
        [
            [t.code("trigger", p["trigger"]), t.code("level", p["level"]), p["escalations"]]
            for p in escalations["by_trigger_and_level"]
        ],
    )
    by_trigger = _counts(
        "escalations-trigger", t("dashboard.by_trigger"), escalations["by_trigger"], "trigger",
        t, by_trigger_and_level,
    )  # fmt: skip
    by_level = _counts(
        "escalations-level", t("dashboard.by_level"), escalations["by_level"], "level", t
    )
    return Section(
        "escalations",
        t("dashboard.escalations"),
        [by_trigger, by_level],
        summary=[
            (t("dashboard.escalations_total"), str(escalations["total"])),
            (t("dashboard.escalated_complaints"), str(escalated)),
        ],
    )


SATISFACTIONS = ("satisfied", "basically_satisfied", "dissatisfied")


def _satisfaction(figures: dict[str, Any], t: Translator) -> Section:
    said = {code: figures[code] for code in SATISFACTIONS}
    table = (
        [t("dashboard.col.metric"), t("dashboard.col.value")],
        [
            [t("dashboard.callbacks"), figures["callbacks"]],
            *([t.code("satisfaction", code), figures[code]] for code in SATISFACTIONS),
            [t("dashboard.satisfaction_rate"), exact_percent(figures["satisfaction_rate"])],
            [t("dashboard.resolved_rate"), exact_percent(figures["resolved_rate"])],
            [t("dashboard.unreached"), figures["unreached_attempts"]],
        ],
    )
    chart = _counts("satisfaction", t("dashboard.satisfaction"), said, "satisfaction", t, table)
    if not figures["callbacks"]:
        chart.chart, chart.note = None, t("dashboard.empty")
    return Section(
        "satisfaction",
        t("dashboard.satisfaction"),
        [chart],
        summary=[
            (t("dashboard.satisfaction_rate"), exact_percent(figures["satisfaction_rate"])),
            (t("dashboard.resolved_rate"), exact_percent(figures["resolved_rate"])),
            (t("dashboard.callbacks"), str(figures["callbacks"])),
        ],
    )
