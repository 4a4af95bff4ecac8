"""The SLA dashboard in headless Chromium against real service processes: a supervisor opens it
on the callback service (which serves the report) and sees the charts drawn with the report's
figures for complaints made here through intake, opens a chart's numbers, and nothing is asked
of another host."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.harness import HostGuard, Screenshot
from tests.conftest import intake_body
from tests.e2e.processes import service, token

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

BEIJING = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def services(sqlite_store_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(intake, callback): complaints come in at one, the report and the dashboard at the
    other."""
    with (
        service("intake", sqlite_store_env) as intake,
        service("callback", sqlite_store_env) as callback,
    ):
        yield intake, callback


def accept_web_complaints(intake: str, env: dict[str, str]) -> None:
    """Three complaints sent in on the web: two received an hour ago (accepted within the
    24-hour limit), one three days ago (accepted late): the acceptance rule is 2 met, 1 missed."""
    auth = {"Authorization": f"Bearer {token(env, 'agent', 'agent-dash')}"}
    now = datetime.now(BEIJING)
    for n, received in enumerate((timedelta(hours=1), timedelta(hours=1), timedelta(days=3))):
        body = intake_body(
            channel="web",
            customer={"id": f"cust-dash-{n}", "name": "张伟", "phone": f"1391234500{n}"},
            received_at=(now - received).isoformat(),
            occurred_at=(now - timedelta(days=4)).isoformat(),
        )
        created = httpx.post(
            f"{intake}/complaints", json=body, headers={**auth, "Idempotency-Key": f"dash-{n}"}
        )
        assert created.status_code == 201, created.text


def report(callback: str, env: dict[str, str], first: str, last: str) -> dict[str, Any]:
    """The period's report as the API gives it, once the read model has the three."""
    auth = {"Authorization": f"Bearer {token(env, 'analyst', 'ana-dash')}"}
    end = datetime.fromisoformat(last).replace(tzinfo=BEIJING) + timedelta(days=1)
    params = {
        "from": datetime.fromisoformat(first).replace(tzinfo=BEIJING).isoformat(),
        "to": end.isoformat(),
    }
    deadline = time.monotonic() + 30
    while True:
        answer = httpx.get(f"{callback}/reports/improvement", params=params, headers=auth)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["complaints"] >= 3 or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_a_supervisor_sees_the_charts_with_the_reports_figures(
    services: tuple[str, str],
    sqlite_store_env: dict[str, str],
    page: Page,
    blocked: HostGuard,
    screenshot: Screenshot,
) -> None:
    intake, callback = services
    accept_web_complaints(intake, sqlite_store_env)
    today = datetime.now(BEIJING).date()
    first, last = (today - timedelta(days=13)).isoformat(), today.isoformat()
    got = report(callback, sqlite_store_env, first, last)
    assert got["complaints"] == 3
    acceptance = next(r for r in got["time_limits"]["rules"] if r["limit"] == "acceptance")
    assert (acceptance["met"], acceptance["missed"], acceptance["on_time_rate"]) == (2, 1, 0.6667)

    page.goto(f"{callback}/console/")
    page.locator("#token-signin textarea[name=token]").fill(
        token(sqlite_store_env, "supervisor", "sup-dash")
    )
    page.locator("#token-signin button[type=submit]").click()
    page.get_by_role("link", name="时限看板").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("时限看板")
    page.goto(f"{callback}/console/dashboard?from={first}&to={last}")
    expect(page.locator("#complaints")).to_have_text("3")

    # The rules' chart: an SVG image named for screen readers, the acceptance bar at the
    # report's rate, labelled with it, the target drawn across it.
    chart = page.locator("svg#chart-on-time-rules")
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute("role", "img")
    expect(chart).to_have_attribute("aria-label", "各规则按时率与目标")
    bar = chart.locator('rect.bar[data-value="0.6667"]')
    expect(bar).to_have_count(1)
    assert bar.bounding_box()["width"] > 0  # type: ignore[index]
    expect(chart.locator("text.value", has_text="66.7%")).to_have_count(1)
    expect(chart.locator(f'line.target[data-target="{acceptance["target"]}"]')).not_to_have_count(0)

    # Week by week: two weeks, the three in the second.
    weekly = page.locator("figure", has=page.locator("figcaption", has_text="受理 · 24 hours"))
    expect(weekly.locator("svg rect.bar")).to_have_count(2)
    expect(weekly.locator('svg rect.bar[data-value="0.6667"]')).to_have_count(1)

    # The accountability table by area, drawn; the escalations say there are none.
    expect(page.locator("svg#chart-accountability-area")).to_be_visible()
    expect(page.locator("#escalations")).to_contain_text("此期间没有可显示的数据")

    # The numbers a click away: the table beneath the chart, with the exact figures.
    figure = page.locator("figure#on-time-rules")
    table = figure.locator("details table")
    expect(table).to_be_hidden()
    figure.locator("details summary").click()
    expect(table).to_be_visible()
    row = table.locator("tr", has_text="受理")
    expect(row).to_contain_text("66.67%")
    expect(row.locator("td").nth(3)).to_have_text("2")
    expect(row.locator("td").nth(4)).to_have_text("1")
    csv_link = figure.locator("details a", has_text="CSV")
    expect(csv_link).to_have_attribute("href", f"/console/dashboard.csv?from={first}&to={last}")
    screenshot(page, "dashboard")

    with page.expect_download() as download:
        csv_link.click()
    text = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115
    assert "rule,acceptance," in text and ",on_time_rate,0.6667" in text
    assert blocked.attempts == []
