"""A complaint's whole life in the console, in headless Chromium against the four real service
processes (the console of each calls the others by URL, as `make run` wires them): staff sign
in with the development picker, an agent files a complaint through the form and finds it in
the queue, a supervisor assigns it, the investigator records evidence, findings, a resolution
and the reply, the callback agent records the callback and archives it — each a form on the
complaint's page — while the limits and the timeline change; and a complaint under a limit that
passes during the test escalates on its own (the deadline watch), as the page and the
supervisor's dashboard then show."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from shared.cli.run import free_port
from shared.domain.policy import DEFAULT_POLICY_PATH
from tests.browser.harness import NewPage, Screenshot
from tests.e2e.processes import gateway, service

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SERVICES = ("intake", "investigation", "escalation", "callback")
SHANGHAI = ZoneInfo("Asia/Shanghai")
#: The default policy, and one limit that passes while the test watches: installation
#: complaints must be investigated within 0.002 hours (7.2 seconds).
FAST_LIMIT = """
[[limit]]
name = "investigation"
applies = { category = ["installation"] }
amount = 0.002
unit = "hours"
met_by = ["FindingsRecorded"]
source = "browser test: a limit that passes while the test watches"
"""


@pytest.fixture(scope="module")
def console(
    sqlite_store_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The four services on one SQLite store, each knowing where the others are; the console
    of intake is the one the browser opens."""
    policy = tmp_path_factory.mktemp("policy") / "policy.toml"
    default = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    policy.write_text(
        re.sub(r'^version = ".*"$', 'version = "browser-fast"', default, count=1, flags=re.M)
        + FAST_LIMIT,
        encoding="utf-8",
    )
    ports = {name: free_port() for name in SERVICES}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    with ExitStack() as stack:
        messages = stack.enter_context(gateway(sqlite_store_env))
        env = {
            **sqlite_store_env,
            "COMPLAINTS_ENVIRONMENT": "development",
            "COMPLAINTS_POLICY_PATH": str(policy),
            "COMPLAINTS_DEADLINE_WATCH_SECONDS": "0.5",
            "COMPLAINTS_CONSOLE_SERVICE_URLS": json.dumps(urls),
            "COMPLAINTS_NOTIFICATION_GATEWAY_URL": f"{messages}/messages",
        }
        for name in SERVICES:
            stack.enter_context(service(name, env, port=ports[name]))
        yield urls["intake"]


def signed_in(new_page: NewPage, console: str, role: str, name: str) -> Page:
    """A browser of its own (its own cookies) signed in with the development picker."""
    page = new_page()
    page.goto(f"{console}/console/")
    form = page.locator("#dev-signin")
    form.locator("select[name=role]").select_option(role)
    form.locator("input[name=name]").fill(name)
    form.locator("button[type=submit]").click()
    expect(page.locator(".who")).to_contain_text(name)
    return page


#: What each role finds in the header once signed in (the API's "who may do what"): the links
#: to the pages it may use, none to the others.
NAV = {
    "agent": ["工作队列", "新建投诉", "登记申诉"],
    "investigator": ["工作队列"],
    "supervisor": ["工作队列", "新建投诉", "登记申诉", "时限看板"],
    "callback": ["工作队列"],
    "analyst": ["工作队列", "时限看板", "审计"],
    "regulator": ["工作队列", "时限看板", "审计"],
    "admin": ["工作队列", "新建投诉", "登记申诉", "时限看板", "审计", "系统管理"],
}


@pytest.mark.parametrize("role", NAV)
def test_each_role_signs_in_and_finds_its_pages(console: str, new_page: NewPage, role: str) -> None:
    page = signed_in(new_page, console, role, f"{role}-nav")
    links = page.locator("header nav > a").all_inner_texts()
    assert links[:-1] == NAV[role]  # the last is the language switch
    for other in {text for texts in NAV.values() for text in texts} - set(NAV[role]):
        expect(page.get_by_role("link", name=other, exact=True)).to_have_count(0)


def later(days: int) -> str:
    """A time `days` ahead as the browser's date-time field takes it (the staff's zone)."""
    return (datetime.now(SHANGHAI) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


def give(
    page: Page, command: str, fields: dict[str, str], *, select: set[str] = frozenset()
) -> None:  # type: ignore[assignment]
    """Open a command's form on the complaint's page, fill it in and send it."""
    form = page.locator(f"#cmd-{command}")
    form.locator("summary").click()
    for name, value in fields.items():
        field = form.locator(f'[name="{name}"]')
        if name in select:
            field.select_option(value)
        else:
            field.fill(value)
    form.locator("button[type=submit]").click()
    expect(page.locator("p.done")).to_be_visible()


def timeline(page: Page) -> list[str]:
    """The timeline's event types (each shown by its label, the type its title)."""
    cells = page.locator("table.timeline tbody tr td:nth-child(2)").all()
    return [cell.get_attribute("title") or "" for cell in cells]


def open_complaint(page: Page, console: str, acceptance_no: str) -> None:
    """Find a complaint by its acceptance number in the queue's search and open it."""
    page.goto(f"{console}/console/")
    page.locator("form.search select[name=by]").select_option("acceptance_no")
    page.locator("form.search input[name=q]").fill(acceptance_no)
    page.locator("form.search button").click()
    page.get_by_role("link", name=acceptance_no).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(acceptance_no)


def file_complaint(page: Page, console: str, category: str, customer: str) -> str:
    """An agent's acceptance through the form; the acceptance number it reads out."""
    page.goto(f"{console}/console/new")
    fields = {
        "customer.id": customer,
        "customer.name": "李娜",
        "customer.phone": "13900001111",
        "service_number": "13900001111",
        "occurred_at": later(-1),
        "description": "宽带断线两天,影响在家办公。",
        "demand": "尽快上门维修",
    }
    for name, value in fields.items():
        page.locator(f'[name="{name}"]').fill(value)
    page.locator('[name="business_type"]').select_option("broadband")
    page.locator('[name="category"]').select_option(category)
    page.locator('[name="reply_channel"]').select_option("sms")
    page.get_by_role("button", name="受理").click()
    number = page.locator("#acceptance-no")
    expect(number).to_have_text(re.compile(r"^\d{6}-\d{6}-\d$"))
    return number.inner_text()


def test_a_complaint_lives_its_whole_life_in_the_pages(
    console: str, new_page: NewPage, screenshot: Screenshot
) -> None:
    agent = signed_in(new_page, console, "agent", "agent-7")
    number = file_complaint(agent, console, "fault_repair", "cust-browser-1")
    screenshot(agent, "accepted")
    open_complaint(agent, console, number)
    expect(agent.locator("dd.status")).to_have_text("已受理")
    expect(agent.locator("section.commands summary")).to_have_text(["升级", "不予受理"])
    screenshot(agent, "queue-search")

    supervisor = signed_in(new_page, console, "supervisor", "sup-1")
    open_complaint(supervisor, console, number)
    give(
        supervisor, "assign",
        {"department": "network-ops", "investigator": "inv-7", "complexity": "simple"},
        select={"complexity"},
    )  # fmt: skip
    expect(supervisor.locator("dd.status")).to_have_text("调查中")

    investigator = signed_in(new_page, console, "investigator", "inv-7")
    open_complaint(investigator, console, number)
    investigation = investigator.locator("tr.limit").filter(
        has_text="seed 003: finish the investigation"
    )
    expect(investigation).to_have_class(re.compile(r"state-running"))
    give(
        investigator, "add_evidence",
        {"kind": "system_log", "ref": "ALARM-4417", "summary": "三天内告警 37 次"},
        select={"kind"},
    )  # fmt: skip
    give(
        investigator, "record_findings",
        {"conclusion": "光猫故障导致断线", "basis": "《宽带服务规范》第 5 条",
         "root_cause": "device_fault", "upheld": "true"},
        select={"upheld"},
    )  # fmt: skip
    expect(investigation).to_have_class(re.compile(r"state-met"))  # findings met it
    give(
        investigator, "propose_resolution",
        {"measures": "更换光猫\n上门复测", "remedies.0.type": "fee_waiver",
         "remedies.0.amount": "30.00", "owner": "eng-7", "due_at": later(2)},
        select={"remedies.0.type"},
    )  # fmt: skip
    give(
        investigator, "reply",
        {"channel": "sms", "conclusion": "光猫故障已处理", "basis": "《宽带服务规范》第 5 条",
         "plan": "更换光猫并减免 30 元", "execution": "已更换"},
        select={"channel"},
    )  # fmt: skip
    expect(investigator.locator("dd.status")).to_have_text("已答复")
    done = timeline(investigator)
    steps = ["EvidenceAdded", "FindingsRecorded", "ResolutionProposed", "Replied"]
    assert [done.index(step) for step in steps] == sorted(done.index(step) for step in steps)
    screenshot(investigator, "complaint-replied")

    callback = signed_in(new_page, console, "callback", "cb-3")
    open_complaint(callback, console, number)
    give(
        callback, "record_callback",
        {"reached": "true", "satisfaction": "satisfied", "resolved": "true", "comments": "已恢复"},
        select={"reached", "satisfaction", "resolved"},
    )  # fmt: skip
    give(callback, "archive", {"summary": "光猫更换,减免 30 元,客户满意。"})
    expect(callback.locator("dd.status")).to_have_text("已归档")
    expect(callback.locator("section.commands")).to_have_count(0)
    events = timeline(callback)
    for kind in ("Accepted", "Assigned", "EvidenceAdded", "FindingsRecorded",
                 "ResolutionProposed", "Replied", "CallbackRecorded", "Archived"):  # fmt: skip
        assert kind in events, (kind, events)
    assert events.index("Assigned") < events.index("Replied") < events.index("Archived")
    screenshot(callback, "complaint-archived")


def test_a_missed_limit_escalates_on_its_own(
    console: str, new_page: NewPage, screenshot: Screenshot
) -> None:
    agent = signed_in(new_page, console, "agent", "agent-8")
    number = file_complaint(agent, console, "installation", "cust-browser-2")
    supervisor = signed_in(new_page, console, "supervisor", "sup-2")
    open_complaint(supervisor, console, number)
    fast = supervisor.locator("tr.limit").filter(has_text="browser test")
    expect(fast).to_have_count(1)
    # Nobody acts: the deadline watch meets the passed limit and escalates. The page is read
    # again until it shows that (a look every second, 30 s at most), not slept through.
    for _ in range(30):
        if supervisor.locator("dd.status").inner_text() == "已升级":
            break
        supervisor.wait_for_timeout(1000)
        supervisor.reload()
    expect(supervisor.locator("dd.status")).to_have_text("已升级")
    expect(supervisor.locator("tr.limit.state-missed")).not_to_have_count(0)
    row = supervisor.locator("table.timeline tbody tr").filter(has_text="deadline-watch")
    expect(row.first).to_be_visible()
    screenshot(supervisor, "escalated-by-the-watch")

    # The supervisor's dashboard counts it: an escalation set off by a missed limit.
    supervisor.get_by_role("link", name="时限看板").click()
    by_trigger = supervisor.locator("#escalations-trigger")
    expect(by_trigger.locator("svg")).to_be_visible()
    by_trigger.locator("summary").click()
    missed = by_trigger.locator("tbody tr").filter(has_text="超过时限")
    expect(missed.locator("td")).to_have_text(["超过时限", "省级", "1"])  # city → provincial
    screenshot(supervisor, "dashboard", full_page=False)
