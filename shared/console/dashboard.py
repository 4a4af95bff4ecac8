"""The SLA dashboard (`/console/dashboard`): the improvement report of a period, as charts with
their exact figures a click away and the report's CSV a link away.

Everything comes from `GET /reports/improvement` (the callback service), called with the
signed-in user's token: the report of the whole period, and one report per week of it for the
on-time rates week by week (each week's complaints, their limits judged as they stand now).
The API decides who may read it; the page shows its answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from markupsafe import Markup

from shared.console import session
from shared.console.charts import Bar, bars, columns, exact_percent
from shared.console.client import Answer, Api
from shared.console.i18n import Translator, language
from shared.console.pages import (
    SECURITY_HEADERS,
    display_tz,
    render,
    signed_out,
    signin_page,
)
from shared.http.auth import Principal
from shared.http.routes import REPORT
from shared.http.state import clock_of

router = APIRouter(prefix=session.PREFIX, include_in_schema=False)

#: The period shown when none is asked for: the last eight weeks, today included.
DEFAULT_WEEKS = 8
#: The longest period the page draws week by week (a year's weeks: one report each).
MAX_DAYS = 53 * 7
#: The period's days as the query gives them: checked here, so a bad one is a page that
#: says why (the app would answer FastAPI's JSON 422).
FirstDay = Annotated[str | None, Query(alias="from")]
LastDay = Annotated[str | None, Query(alias="to")]
#: The accountability table's groups the page shows (the report has channel and level too).
ACCOUNTABLE = ("investigator", "department", "area")
#: How each group's value is labelled (the API's code), by the dimension it belongs to.
GROUP_CODES = {"category": "category", "area": "area", "level": "level"}


@dataclass(frozen=True)
class Period:
    """Whole days in the staff's time zone, `last` included."""

    first: date
    last: date
    #: The console's time zone (the policy's).
    tz: ZoneInfo

    def start(self, day: date) -> datetime:
        return datetime.combine(day, time(0), self.tz)

    @property
    def params(self) -> list[tuple[str, str]]:
        return _span(self.start(self.first), self.start(self.last + timedelta(days=1)))

    def weeks(self) -> list[tuple[date, date]]:
        """Seven days each from the first; the last week ends with the period."""
        found, day = [], self.first
        while day <= self.last:
            found.append((day, min(day + timedelta(days=6), self.last)))
            day += timedelta(days=7)
        return found

    def week_params(self, first: date, last: date) -> list[tuple[str, str]]:
        return _span(self.start(first), self.start(last + timedelta(days=1)))


def _span(start: datetime, end: datetime) -> list[tuple[str, str]]:
    return [("from", start.isoformat()), ("to", end.isoformat())]


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


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


def _translator(request: Request) -> Translator:
    return Translator(language(request.cookies.get(session.LANGUAGE_COOKIE)))


def asked_period(
    request: Request, start: str | None, end: str | None, t: Translator
) -> Period | Refusal:
    """The period asked for (dates `from` and `to`, both included), by default the last eight
    weeks; a refusal names what is wrong. (A query parameter the page does not take is the
    app's 400, as on every route.)"""
    tz = display_tz(request)
    today = clock_of(request)().astimezone(tz).date()
    try:
        last = _day(end) or today
        first = _day(start) or last - timedelta(days=DEFAULT_WEEKS * 7 - 1)
    except ValueError:
        return Refusal(422, t("dashboard.bad_date"))
    if last < first:
        return Refusal(422, t("dashboard.bad_order"))
    if (last - first).days + 1 > MAX_DAYS:
        return Refusal(422, t("dashboard.too_long").format(days=MAX_DAYS))
    return Period(first, last, tz)


def _day(value: str | None) -> date | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    if len(text) != 10:  # YYYY-MM-DD, nothing else
        raise ValueError(text)
    return date.fromisoformat(text)


def _problem(
    request: Request, principal: Principal, answer: Answer | Refusal, t: Translator
) -> Response:
    if isinstance(answer, Refusal):
        status, message = answer.status, answer.message
    else:
        status = answer.status
        message = t("error.forbidden") if status == 403 else answer.detail
    return render(request, "error.html", status=status, principal=principal, message=message)


@router.get("/dashboard")
async def dashboard(request: Request, start: FirstDay = None, end: LastDay = None) -> Response:
    found = await session.signed_in(request)
    if found is None:
        return signin_page(request, status=401)
    token, principal = found
    t = _translator(request)
    period = asked_period(request, start, end, t)
    if isinstance(period, Refusal):
        return _problem(request, principal, period, t)
    api = Api(request, token)
    service, path = REPORT
    whole = await api.get(path, period.params, service)
    if whole.status == 401:
        return signed_out(request)
    if not whole.ok:
        return _problem(request, principal, whole, t)
    weekly: list[tuple[date, date, dict[str, Any]]] = []
    for first, last in period.weeks():
        week = await api.get(path, period.week_params(first, last), service)
        if not week.ok:
            return _problem(request, principal, week, t)
        weekly.append((first, last, week.body))
    report = whole.body
    query = f"from={period.first.isoformat()}&to={period.last.isoformat()}"
    return render(
        request,
        "dashboard.html",
        principal=principal,
        period=period,
        report=report,
        csv_query=query,
        sections=sections(report, weekly, t),
    )


@router.get("/dashboard.csv")
async def dashboard_csv(request: Request, start: FirstDay = None, end: LastDay = None) -> Response:
    """The period's report as CSV, as the API gives it (its file name too)."""
    found = await session.signed_in(request)
    if found is None:
        return signin_page(request, status=401)
    token, principal = found
    t = _translator(request)
    period = asked_period(request, start, end, t)
    if isinstance(period, Refusal):
        return _problem(request, principal, period, t)
    service, path = REPORT
    response = await Api(request, token).fetch(path, [*period.params, ("format", "csv")], service)
    if isinstance(response, Answer):
        return _problem(request, principal, response, t)
    if response.status_code == 401:
        return signed_out(request)
    if response.status_code != 200:
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text[:500]}
        return _problem(request, principal, Answer(response.status_code, body), t)
    headers = {**SECURITY_HEADERS}
    if "content-disposition" in response.headers:
        headers["Content-Disposition"] = response.headers["content-disposition"]
    return Response(response.content, media_type="text/csv; charset=utf-8", headers=headers)


# -- the figures ---------------------------------------------------------------------------------


def sections(
    report: dict[str, Any], weekly: list[tuple[date, date, dict[str, Any]]], t: Translator
) -> list[Section]:
    limits = report["time_limits"]
    return [
        _on_time(limits["rules"], weekly, t),
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


def _on_time(
    rules: list[dict[str, Any]], weekly: list[tuple[date, date, dict[str, Any]]], t: Translator
) -> Section:
    """Every rule's on-time rate against its target over the period, then week by week for
    each rule with a limit met or missed (one only running or closed has no rate to show)."""
    shown = [rule for rule in rules if rule["met"] + rule["missed"] + rule["running"]]
    overall = Figure(
        "on-time-rules",
        t("dashboard.on_time"),
        bars(
            "chart-on-time-rules",
            t("dashboard.on_time"),
            [Bar(_rule_label(r, t), r["on_time_rate"], r["target"]) for r in shown],
        )
        if shown
        else None,
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
        note="" if shown else t("dashboard.empty"),
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
    return Figure(
        chart_id,
        title,
        bars(
            f"chart-{chart_id}",
            title,
            [Bar(label, g["on_time_rate"], g["target"]) for label, g in labelled],
        )
        if groups
        else None,
        [t("dashboard.col.group"), *_figure_head(t)],
        [[label, *_figures(g)] for label, g in labelled],
        note="" if groups else t("dashboard.empty"),
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


def _counts(chart_id: str, title: str, counts: dict[str, int], kind: str, t: Translator) -> Figure:
    labels = {code: t.code(kind, code) for code in counts}
    return Figure(
        chart_id,
        title,
        bars(
            f"chart-{chart_id}",
            title,
            [Bar(labels[code], float(n), shown=str(n)) for code, n in counts.items()],
            rates=False,
        )
        if counts
        else None,
        [t(f"dashboard.col.{kind}"), t("dashboard.col.count")],
        [[labels[code], n] for code, n in counts.items()],
        note="" if counts else t("dashboard.empty"),
    )


def _escalations(escalations: dict[str, Any], escalated: int, t: Translator) -> Section:
    by_trigger = _counts(
        "escalations-trigger", t("dashboard.by_trigger"), escalations["by_trigger"], "trigger", t
    )
    # The table under the triggers' chart: each trigger by the level it went up to.
    by_trigger.head = [
        t("dashboard.col.trigger"), t("dashboard.col.level"), t("dashboard.col.count")
    ]  # fmt: skip
    by_trigger.rows = [
        [t.code("trigger", p["trigger"]), t.code("level", p["level"]), p["escalations"]]
        for p in escalations["by_trigger_and_level"]
    ]
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
    chart = _counts("satisfaction", t("dashboard.satisfaction"), said, "satisfaction", t)
    if not figures["callbacks"]:
        chart.chart, chart.note = None, t("dashboard.empty")
    chart.head = [t("dashboard.col.metric"), t("dashboard.col.value")]
    chart.rows = [
        [t("dashboard.callbacks"), figures["callbacks"]],
        *([t.code("satisfaction", code), figures[code]] for code in SATISFACTIONS),
        [t("dashboard.satisfaction_rate"), exact_percent(figures["satisfaction_rate"])],
        [t("dashboard.resolved_rate"), exact_percent(figures["resolved_rate"])],
        [t("dashboard.unreached"), figures["unreached_attempts"]],
    ]
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
