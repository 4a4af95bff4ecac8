"""The console's SLA dashboard (`/console/dashboard`) in-process: its charts and their tables
show the improvement report's figures for the complaints made here, its CSV link gives the
report's CSV, and who may see it is the API's answer (an agent gets a 403 page and no link).
(The browser walk through real processes is tests/browser/test_console_dashboard.py.)"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.callback.main import create_app as create_callback_app
from services.intake.main import create_app as create_intake_app
from shared.console import dashboard
from shared.console.charts import exact_percent, percent
from shared.console.client import Answer
from shared.console.client import Api as ConsoleApi
from shared.console.i18n import Translator
from shared.domain.clock import FixedClock
from shared.domain.codes import Service
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import START, TokenFactory, intake_body
from tests.integration.conftest import Api, catch_up
from tests.integration.test_console import ORIGIN, sign_in
from tests.integration.test_investigation import ASSIGN, FINDINGS

#: Mon 23 Nov 2026 10:00 in Beijing; the page is read five days later.
READ_AT = START + timedelta(days=5)


@pytest.fixture
async def board(settings: Settings, clock: FixedClock) -> AsyncIterator[httpx.AsyncClient]:
    """The console of the callback service: the report it reads is its own, in-process."""
    app = create_callback_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            yield client


async def three_complaints(
    api: Api, inv: Api, clock: FixedClock, store: ComplaintStore
) -> list[str]:
    """Three complaints accepted on Monday: two investigated within the hour, the third left
    alone until its 72-hour investigation limit has passed (2 met, 1 missed)."""
    ids = []
    for n in range(3):
        clock.now = START + timedelta(minutes=n)
        body = intake_body(customer={"id": f"cust-d{n}", "name": "张伟", "phone": f"1381234000{n}"})
        created = await api.accept(body)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    clock.now = START + timedelta(hours=1)
    for cid in ids[:2]:
        for path, step, role in (
            ("assignment", ASSIGN, ("supervisor", "supervisor-9")),
            ("findings", FINDINGS, ("investigator", ASSIGN["investigator"])),
        ):
            done = await inv.client.post(
                f"/complaints/{cid}/{path}", json=step, headers=inv.headers(*role)
            )
            assert done.status_code == 200, done.text
    clock.now = READ_AT
    await catch_up(store, SummaryProjection(store))
    return ids


async def report(cb: Api, **params: str) -> dict[str, Any]:
    answer = await cb.get("/reports/improvement", "analyst", **params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


#: The dashboard's default period: the eight weeks up to today (Sat 28 Nov, Beijing).
DEFAULT = {"from": "2026-10-04T00:00:00+08:00", "to": "2026-11-29T00:00:00+08:00"}


def numbers(html: str, figure: str) -> list[list[str]]:
    """The rows of one figure's numbers table."""
    found = re.search(rf'<figure class="dashboard-figure" id="{figure}">(.*?)</figure>', html, re.S)
    assert found, figure
    return [
        [cell.strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", found.group(1), re.S)
        if "<td>" in row
    ]


async def test_a_supervisor_sees_the_reports_figures_as_charts_and_tables(
    board: httpx.AsyncClient,
    api: Api,
    inv: Api,
    cb: Api,
    clock: FixedClock,
    store: ComplaintStore,
    token: TokenFactory,
) -> None:
    await three_complaints(api, inv, clock, store)
    got = await report(cb, **DEFAULT)
    rules = {rule["limit"]: rule for rule in got["time_limits"]["rules"]}
    investigation = rules["investigation"]
    assert (investigation["met"], investigation["missed"]) == (2, 1)
    assert investigation["on_time_rate"] == 0.6667

    await sign_in(board, token("supervisor", "sup-1"))
    page = await board.get("/console/dashboard")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'href="/console/dashboard"' in html  # the nav link
    assert '<dd id="complaints">3</dd>' in html

    # The rules' chart: each bar is the report's rate, labelled, with its target drawn.
    chart = re.search(r'<svg class="chart bars" id="chart-on-time-rules".*?</svg>', html, re.S)
    assert chart
    assert "<title" in chart.group(0) and 'aria-label="各规则按时率与目标"' in chart.group(0)
    assert f'data-value="{investigation["on_time_rate"]}"' in chart.group(0)
    assert f">{percent(investigation['on_time_rate'])}</text>" in chart.group(0)  # 66.7%
    assert f'data-target="{investigation["target"]}"' in chart.group(0)
    # …and its numbers a click away: the same figures, exactly.
    row = next(r for r in numbers(html, "on-time-rules") if r[0] == "调查")
    assert row[3:10] == [
        "2", "1", str(investigation["running"]), str(investigation["closed"]),
        exact_percent(0.6667), exact_percent(investigation["target"]),
        exact_percent(investigation["gap"]),
    ]  # fmt: skip
    assert "66.67%" in row

    # Week by week: the week of 22 Nov holds all three; each week is its own report.
    weekly = [f for f in re.findall(r'id="(weekly-\d+)"', html)]
    assert weekly
    found = None
    for figure in weekly:
        caption = re.search(rf'id="{figure}">\s*<figcaption>(.*?)</figcaption>', html, re.S)
        if caption and "调查" in caption.group(1):
            found = figure
    assert found is not None
    week_rows = numbers(html, found)
    assert len(week_rows) == 8
    assert week_rows[-1][0] == "2026-11-22 – 2026-11-28"
    assert week_rows[-1][1:3] == ["2", "1"] and week_rows[-1][5] == "66.67%"
    assert all(r[1:] == ["—"] * 7 for r in week_rows[:-1])  # no complaint those weeks
    week = await report(cb, **{"from": "2026-11-22T00:00:00+08:00", "to": DEFAULT["to"]})
    assert {r["limit"]: r for r in week["time_limits"]["rules"]}["investigation"][
        "on_time_rate"
    ] == 0.6667

    # The accountability table and the weakest links, as the report has them.
    investigators = {r[0]: r for r in numbers(html, "accountability-investigator")}
    reported = {g["group"]: g for g in got["time_limits"]["accountability"]["investigator"]}
    assert set(investigators) == {"未分派" if name == "unassigned" else name for name in reported}
    assert investigators["inv-42"][5] == exact_percent(reported["inv-42"]["on_time_rate"])
    weakest = numbers(html, "weakest-departments")
    assert len(weakest) == len(got["time_limits"]["weakest_links"]["departments"])
    satisfaction = numbers(html, "satisfaction")
    assert satisfaction[0] == ["回访接通的投诉", "0"]

    # The CSV link: the report's CSV, through the console with the user's token.
    assert 'href="/console/dashboard.csv?from=2026-10-04&amp;to=2026-11-28"' in html
    assert html.count("<details") >= 8 and html.count("<svg") >= 6
    download = await board.get("/console/dashboard.csv?from=2026-10-04&to=2026-11-28")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(download.text)))
    value = {(r["section"], r["group"], r["metric"]): r["value"] for r in lines}
    assert value["rule", "investigation", "on_time_rate"] == "0.6667"
    assert value["period", "", "complaints"] == "3"


async def test_an_analyst_sees_it_and_english_is_a_switch(
    board: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(board, token("analyst", "ana-1"))
    page = await board.get("/console/dashboard?from=2026-11-01&to=2026-11-28")
    assert page.status_code == 200
    assert "时限看板" in page.text and 'id="chart-' not in page.text.split("<main>")[0]
    await board.get("/console/language/en", params={"next": "/console/dashboard"})
    english = await board.get("/console/dashboard?from=2026-11-01&to=2026-11-28")
    assert "SLA dashboard" in english.text and "Accountability" in english.text


async def test_an_agent_gets_no_link_and_a_403_page(
    board: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(board, token("agent", "agent-1"))
    home = await board.get("/console/")
    assert "/console/dashboard" not in home.text
    page = await board.get("/console/dashboard")
    assert page.status_code == 403
    assert "您的角色不能执行此操作" in page.text and "<svg" not in page.text
    download = await board.get("/console/dashboard.csv")
    assert download.status_code == 403 and "text/html" in download.headers["content-type"]


async def test_without_a_session_it_asks_to_sign_in(board: httpx.AsyncClient) -> None:
    page = await board.get("/console/dashboard")
    assert page.status_code == 401 and 'name="token"' in page.text


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("from=2026-13-01", 422, "YYYY-MM-DD"),
        ("from=yesterday", 422, "YYYY-MM-DD"),
        ("from=2026-11-01T00:00", 422, "YYYY-MM-DD"),
        ("from=2026-11-20&to=2026-11-01", 422, "截止日期不能早于起始日期"),
        ("from=2024-01-01&to=2026-01-01", 422, "371"),
        # the last days a date holds were a 500 (the day after overflowed): now the API's years
        ("from=9999-12-25&to=9999-12-31", 422, "1990-01-01 至 2099-12-30"),
        ("to=2100-01-01", 422, "to 超出可查询的范围"),
        ("from=1989-12-31&to=1990-01-06", 422, "from 超出可查询的范围"),
        ("from=2026-11-01&from=2026-11-02", 400, "查询参数重复:from"),
    ],
)
async def test_a_bad_period_is_a_page_that_says_why(
    board: httpx.AsyncClient, token: TokenFactory, query: str, status: int, says: str
) -> None:
    await sign_in(board, token("supervisor"))
    page = await board.get(f"/console/dashboard?{query}")
    assert page.status_code == status
    assert "text/html" in page.headers["content-type"] and says in page.text
    download = await board.get(f"/console/dashboard.csv?{query}")
    assert download.status_code == status and says in download.text


async def test_the_api_years_edges_are_pages(board: httpx.AsyncClient, token: TokenFactory) -> None:
    await sign_in(board, token("supervisor"))
    for query in ("from=2099-12-24&to=2099-12-30", "from=1990-01-01&to=1990-01-07"):
        page = await board.get(f"/console/dashboard?{query}")
        assert page.status_code == 200, page.text
        assert (await board.get(f"/console/dashboard.csv?{query}")).status_code == 200


async def test_a_parameter_it_does_not_read_is_ignored(
    board: httpx.AsyncClient, token: TokenFactory
) -> None:
    """A page is not an API route: what it does not read it ignores (the default period)."""
    await sign_in(board, token("supervisor"))
    page = await board.get("/console/dashboard?week=3")
    assert page.status_code == 200, page.text
    default = await board.get("/console/dashboard")
    shown = re.findall(r'<input type="date" name="(?:from|to)" value="([^"]+)"', page.text)
    assert len(shown) == 2
    assert shown == re.findall(r'name="(?:from|to)" value="([^"]+)"', default.text)


async def test_the_weeks_reports_run_four_at_a_time_and_a_year_shows_26_weeks(
    board: httpx.AsyncClient, token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[tuple[str, str]]] = []
    running = [0, 0]  # now, most
    real = ConsoleApi.get

    async def counted(self: ConsoleApi, *args: Any, **kwargs: Any) -> Answer:
        calls.append(args[1])
        running[0] += 1
        running[1] = max(running)
        try:
            await asyncio.sleep(0.01)
            return await real(self, *args, **kwargs)
        finally:
            running[0] -= 1

    monkeypatch.setattr(ConsoleApi, "get", counted)
    await sign_in(board, token("supervisor"))
    page = await board.get("/console/dashboard?from=2025-11-24&to=2026-11-28")  # 53 weeks
    assert page.status_code == 200, page.text
    assert len(calls) == 1 + dashboard.WEEKLY_MAX  # the period, then its latest 26 weeks
    assert running[1] == dashboard.CONCURRENT_REPORTS
    assert calls[1][0] == ("from", "2026-06-01T00:00:00+08:00")
    assert re.search(r'id="weekly-capped">逐周数字只显示最近 26 周\(自 2026-06-01 起\)', page.text)
    weekly = re.findall(r'id="(weekly-\d+)"', page.text)
    assert all(len(numbers(page.text, figure)) == 26 for figure in weekly)
    calls.clear()
    short = await board.get("/console/dashboard?from=2026-11-01&to=2026-11-28")
    assert len(calls) == 5 and "weekly-capped" not in short.text


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (
            422,
            {"detail": "Invalid parameters", "errors": [{"field": "to", "message": "too far"}]},
            "Invalid parameters: to: too far",
        ),
        (401, {"detail": "expired"}, 'name="token"'),
    ],
)
async def test_one_weeks_refusal_is_the_page(
    board: httpx.AsyncClient,
    token: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    body: dict[str, Any],
    says: str,
) -> None:
    """A 401 in any of the reports signs the user out; a 422 names the API's bad fields."""
    real = ConsoleApi.get

    async def third_week_refused(self: ConsoleApi, *args: Any, **kwargs: Any) -> Answer:
        if ("from", "2026-11-15T00:00:00+08:00") in args[1]:
            return Answer(status, body)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(ConsoleApi, "get", third_week_refused)
    await sign_in(board, token("supervisor"))
    page = await board.get("/console/dashboard?from=2026-11-01&to=2026-11-28")
    assert page.status_code == status
    assert says in page.text and "<svg" not in page.text


async def test_the_console_of_another_service_reads_the_report_from_callback(
    settings: Settings, clock: FixedClock, token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The intake service's console asks the callback service, at the URL the settings give
    (here routed in-process to a callback app), with the user's token."""
    callback = create_callback_app(settings, clock=clock)
    called: list[str] = []
    auth: list[str] = []

    class ToCallback(httpx.AsyncClient):
        def __init__(self, **kwargs: Any) -> None:
            if "transport" not in kwargs:  # a call by URL
                called.append(str(kwargs["base_url"]))
                auth.append(kwargs["headers"]["Authorization"])
                kwargs["transport"] = httpx.ASGITransport(app=callback)
            super().__init__(**kwargs)

    urls = {**settings.console_service_urls, Service.CALLBACK: "http://callback.internal:8004"}
    here = create_intake_app(
        settings.model_copy(update={"console_service_urls": urls, "dispatcher_enabled": False}),
        clock=clock,
    )
    supervisor = token("supervisor", "sup-2")
    async with callback.router.lifespan_context(callback), here.router.lifespan_context(here):
        transport = httpx.ASGITransport(app=here)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as web:
            await sign_in(web, supervisor)
            monkeypatch.setattr(httpx, "AsyncClient", ToCallback)
            page = await web.get("/console/dashboard?from=2026-11-16&to=2026-11-28")
            monkeypatch.undo()
    assert page.status_code == 200, page.text
    assert called == ["http://callback.internal:8004"] * 3  # the period, then its two weeks
    assert set(auth) == {f"Bearer {supervisor}"}


async def test_the_period_re_analysed_under_another_policy_version(
    board: httpx.AsyncClient,
    api: Api,
    inv: Api,
    cb: Api,
    clock: FixedClock,
    store: ComplaintStore,
    token: TokenFactory,
) -> None:
    """The walkthrough's re-analysis under the draft policy, in the page: the versions the
    report knows are offered, and the comparison shown is the report's."""
    await three_complaints(api, inv, clock, store)
    draft = "2027.1-draft"
    got = await report(cb, **DEFAULT, policy=draft)
    await sign_in(board, token("analyst", "ana-1"))
    plain = await board.get("/console/dashboard")
    assert f'<option value="{draft}">' in plain.text
    assert 'id="reanalysis"' not in plain.text
    page = await board.get("/console/dashboard", params={"policy": draft})
    assert page.status_code == 200, page.text
    assert f'<option value="{draft}" selected>' in page.text
    shown = numbers(page.text, "reanalysis-comparison")
    assert shown == [
        [
            Translator("zh").code("limit", row["limit"]),
            exact_percent(row["applied"]),
            exact_percent(row["reanalysed"]),
            exact_percent(row["change"]),
        ]
        for row in got["reanalysis"]["comparison"]
    ]
    assert f"policy={draft}" in page.text  # the CSV link carries it
    # a version the report does not know: its refusal, naming the ones it does
    unknown = await board.get("/console/dashboard", params={"policy": "1999.9"})
    assert unknown.status_code == 422
    assert "known: 2026.2, 2027.1-draft" in unknown.text
