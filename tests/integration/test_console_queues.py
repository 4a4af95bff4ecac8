"""The console's queues beyond the list's plain filters: my department's (the token's optional
department claim, or one typed when it has none), the major incidents and an incident's page;
the timeline's events by their labels; and times in the policy's time zone."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from services.escalation.main import create_app as create_escalation_app
from services.intake.main import create_app as create_intake_app
from services.investigation.main import create_app as create_investigation_app
from shared.cli import token as token_cli
from shared.domain.clock import FixedClock
from shared.domain.policy import DEFAULT_POLICY_PATH
from shared.http.auth import principal_of_claims
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import TokenFactory, intake_body
from tests.integration.test_console import ORIGIN, SAME, sign_in
from tests.integration.test_incidents import BURSTY_TOML, at, incident_id, watch
from tests.integration.test_investigation import ASSIGN


@asynccontextmanager
async def running(*apps: FastAPI) -> AsyncIterator[list[httpx.AsyncClient]]:
    """A client on each app, their lifespans running (one database: they share it)."""
    async with AsyncExitStack() as stack:
        clients = []
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url=ORIGIN)
                )
            )
        yield clients


def auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


async def accepted_and_assigned(
    intake: httpx.AsyncClient,
    inv: httpx.AsyncClient,
    token: TokenFactory,
    customer_id: str,
    department: str,
) -> dict[str, Any]:
    """A complaint accepted (intake) and assigned to a department (investigation), the list
    caught up with both."""
    customer = {**intake_body()["customer"], "id": customer_id}
    created = await intake.post(
        "/complaints", json=intake_body(customer=customer), headers=auth(token("agent"))
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    assigned = await inv.post(
        f"/complaints/{body['id']}/assignment",
        json={**ASSIGN, "department": department},
        headers=auth(token("supervisor"), **{"Idempotency-Key": f"assign-{customer_id}"}),
    )
    assert assigned.status_code == 200, assigned.text
    listed = await inv.get(
        "/complaints",
        params={"min_position": assigned.json()["position"], "limit": 1},
        headers=auth(token("agent")),
    )
    assert listed.status_code == 200
    return body


@pytest.fixture
async def desks(
    settings: Settings, clock: FixedClock
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Intake and investigation (the console's host here) in development, one database."""
    dev = settings.model_copy(update={"environment": "development", "dispatcher_enabled": False})
    intake = create_intake_app(dev, clock=clock)
    inv = create_investigation_app(dev, clock=clock)
    async with running(intake, inv) as (intake_client, inv_client):
        yield intake_client, inv_client


# -- my department's queue ----------------------------------------------------------------------


async def test_the_department_queue_lists_the_tokens_department(
    desks: tuple[httpx.AsyncClient, httpx.AsyncClient], token: TokenFactory
) -> None:
    intake, web = desks
    ops = await accepted_and_assigned(intake, web, token, "cust-ops", "network-ops")
    billing = await accepted_and_assigned(intake, web, token, "cust-bill", "billing-desk")

    page = await web.get("/console/")
    assert 'name="department"' in page.text  # the picker takes an optional department
    signed = await web.post(
        "/console/signin",
        data={"role": "investigator", "name": "inv-42", "department": "network-ops"},
        headers=SAME,
    )
    assert signed.status_code == 303
    queue = await web.get("/console/", params={"view": "department"})
    assert queue.status_code == 200
    assert ops["acceptance_no"] in queue.text
    assert billing["acceptance_no"] not in queue.text
    assert "network-ops" in queue.text and 'id="department-form"' not in queue.text
    # the token's department wins over one in the query
    other = await web.get("/console/", params={"view": "department", "department": "billing-desk"})
    assert ops["acceptance_no"] in other.text and billing["acceptance_no"] not in other.text


async def test_without_a_department_claim_the_queue_asks_for_one(
    desks: tuple[httpx.AsyncClient, httpx.AsyncClient], token: TokenFactory
) -> None:
    intake, web = desks
    ops = await accepted_and_assigned(intake, web, token, "cust-ops", "network-ops")
    billing = await accepted_and_assigned(intake, web, token, "cust-bill", "billing-desk")
    await sign_in(web, token("supervisor", "sup-1"))

    asked = await web.get("/console/", params={"view": "department"})
    assert asked.status_code == 200
    assert 'id="department-form"' in asked.text and "未注明部门" in asked.text
    assert ops["acceptance_no"] not in asked.text and billing["acceptance_no"] not in asked.text
    assert "没有符合条件的投诉" not in asked.text  # nothing listed yet, not "none match"

    typed = await web.get("/console/", params={"view": "department", "department": "billing-desk"})
    assert typed.status_code == 200
    assert billing["acceptance_no"] in typed.text and ops["acceptance_no"] not in typed.text
    assert 'name="department" value="billing-desk"' in typed.text  # kept in the form


def test_the_department_claim_is_read_where_the_settings_say() -> None:
    claims = {"sub": "inv-1", "roles": ["investigator"], "org": {"dept": "network-ops"}}
    assert principal_of_claims(claims, "roles", "org.dept").department == "network-ops"
    assert principal_of_claims(claims).department is None
    assert principal_of_claims({**claims, "department": ["a"]}).department is None
    assert principal_of_claims({**claims, "department": "x" * 129}).department is None


def test_make_token_takes_a_department(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("COMPLAINTS_ENVIRONMENT", "development")
    token_cli.main(["--roles", "investigator", "--sub", "inv-1", "--department", "network-ops"])
    minted = capsys.readouterr().out.strip()
    claims = jwt.decode(minted, options={"verify_signature": False})
    assert claims["department"] == "network-ops" and claims["roles"] == ["investigator"]
    token_cli.main(["--roles", "agent"])
    assert "department" not in jwt.decode(
        capsys.readouterr().out.strip(), options={"verify_signature": False}
    )


# -- major incidents ----------------------------------------------------------------------------


async def test_the_incidents_queue_and_an_incidents_page(
    settings: Settings, clock: FixedClock, token: TokenFactory, tmp_path: Path
) -> None:
    """The escalation service's console (its own incidents, in-process) under a policy where
    three complaints of one area in an hour are a major incident."""
    policy = tmp_path / "bursty.toml"
    policy.write_text(BURSTY_TOML, encoding="utf-8")
    quiet = settings.model_copy(update={"deadline_watch_enabled": False, "policy_path": policy})
    app = create_escalation_app(quiet, clock=clock)
    async with running(app) as (web,):
        store: ComplaintStore = app.state.store
        rural = [await at(store, clock, m, f"r{m}") for m in (0, 5, 10)]
        await watch(store, clock)
        await sign_in(web, token("supervisor", "sup-1"))
        rural_id = incident_id("fault_repair", "rural", 1)

        queue = await web.get("/console/", params={"view": "incidents"})
        assert queue.status_code == 200, queue.text
        assert f'href="/console/incidents/{rural_id}"' in queue.text
        assert "第 1 号" in queue.text and "农村" in queue.text
        (row,) = re.findall(r"<tr>\s*<td><a href=\"/console/incidents/.*?</tr>", queue.text, re.S)
        cells = re.findall(r"<td>(.*?)</td>", row, re.S)
        assert cells[-2:] == ["3", "3"]  # members, escalated
        assert cells[4].startswith("2026-11-23 10:00")  # the window opens with the first

        page = await web.get(f"/console/incidents/{rural_id}")
        assert page.status_code == 200, page.text
        for complaint_id in rural:
            assert f'href="/console/complaints/{complaint_id}"' in page.text
        assert "已升级" in page.text and "3" in page.text

        missing = await web.get("/console/incidents/00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 404 and 'class="error"' in missing.text

        # the timeline shows each event by its label, the type as its title
        complaint = await web.get(f"/console/complaints/{rural[0]}")
        assert complaint.status_code == 200
        assert '<td title="Accepted">受理</td>' in complaint.text
        assert '<td title="Escalated">升级</td>' in complaint.text
        assert '<td title="IncidentLinked">关联重大事件</td>' in complaint.text
        web.cookies.set("console_lang", "en", path="/console")
        english = await web.get(f"/console/complaints/{rural[0]}")
        assert '<td title="IncidentLinked">Linked to a major incident</td>' in english.text


# -- times in the policy's time zone ------------------------------------------------------------


async def test_the_console_shows_and_takes_times_in_the_policys_zone(
    settings: Settings, clock: FixedClock, token: TokenFactory, tmp_path: Path
) -> None:
    policy = tmp_path / "utc.toml"
    policy.write_text(
        DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace(
            'timezone = "Asia/Shanghai"', 'timezone = "UTC"'
        ),
        encoding="utf-8",
    )
    utc = settings.model_copy(update={"policy_path": policy})
    async with running(create_intake_app(utc, clock=clock)) as (web,):
        await sign_in(web, token("agent", "agent-9"))
        form = {
            "channel": "hotline",
            "customer.id": "cust-tz",
            "customer.name": "李娜",
            "customer.phone": "13900001111",
            "service_number": "13900001111",
            "business_type": "broadband",
            "category": "fault_repair",
            "occurred_at": "2026-11-22T09:15",
            "description": "宽带断线两天。",
            "demand": "尽快上门维修",
            "reply_channel": "phone",
        }
        answer = await web.post("/console/new", data=form, headers=SAME)
        assert answer.status_code == 201, answer.text
        (complaint_id,) = re.findall(r'href="/console/complaints/([0-9a-f-]{36})"', answer.text)
        read = await web.get(f"/complaints/{complaint_id}", headers=auth(token("agent")))
        # typed without an offset: the policy's local time, here UTC
        assert read.json()["occurred_at"].startswith("2026-11-22T09:15:00")
        page = await web.get(f"/console/complaints/{complaint_id}")
        assert "2026-11-23 02:00" in page.text  # START (10:00 in Beijing) in UTC
        assert "2026-11-23 10:00" not in page.text
