"""The commands on a complaint's page, in-process over all four services: each role sees the
forms it may send now and no other; the forms ask what the routes take (built from their
OpenAPI bodies); a whole lifecycle goes through them; a change by someone else meanwhile is a
412 said as a sentence, a command the status forbids a 409, bad input a 422 beside its field,
and none of those stores anything."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.callback.main import create_app as callback_app
from services.escalation.main import create_app as escalation_app
from services.intake.main import create_app as intake_app
from services.investigation.main import create_app as investigation_app
from shared.console import client
from shared.console.commands import OFFERED, form_fields
from shared.console.i18n import EN, ZH
from shared.domain.clock import FixedClock
from shared.domain.codes import Service
from shared.domain.lifecycle import Command
from shared.http.routes import ROUTES
from shared.settings import Settings
from tests.conftest import TokenFactory, intake_body

ORIGIN = "https://test"
SAME = {"Origin": ORIGIN}
URLS = {service: f"http://{service.value}.internal" for service in Service}


@pytest.fixture
async def web(
    settings: Settings, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """The console of the investigation service; the other services answer at their URLs
    (routed in-process to their apps)."""
    quiet = settings.model_copy(
        update={
            "environment": "production",
            "deadline_watch_enabled": False,
            "dispatcher_enabled": False,
            "webhooks_enabled": False,
            "console_service_urls": URLS,
        }
    )
    # One projector (investigation's) for the four: on SQLite, standbys polling the lease
    # while the leader is stopped mid-batch make the shutdown wait out the busy timeout.
    others = quiet.model_copy(update={"projector_enabled": False})
    apps = {
        URLS[Service.INTAKE]: intake_app(others, clock=clock),
        URLS[Service.INVESTIGATION]: investigation_app(quiet, clock=clock),
        URLS[Service.ESCALATION]: escalation_app(others, clock=clock),
        URLS[Service.CALLBACK]: callback_app(others, clock=clock),
    }
    plain = httpx.AsyncClient

    class ByUrl(plain):  # type: ignore[misc,valid-type]
        def __init__(self, **kwargs: Any) -> None:
            if "transport" not in kwargs:
                kwargs["transport"] = httpx.ASGITransport(app=apps[str(kwargs["base_url"])])
            super().__init__(**kwargs)

    here = apps[URLS[Service.INVESTIGATION]]
    lifespans = [app.router.lifespan_context(app) for app in apps.values()]
    for lifespan in lifespans:
        await lifespan.__aenter__()
    try:
        monkeypatch.setattr(httpx, "AsyncClient", ByUrl)
        async with plain(transport=httpx.ASGITransport(app=here), base_url=ORIGIN) as client:
            yield client
    finally:
        for lifespan in reversed(lifespans):
            await lifespan.__aexit__(None, None, None)


async def sign_in(web: httpx.AsyncClient, token: str) -> None:
    answer = await web.post("/console/signin", data={"token": token}, headers=SAME)
    assert answer.status_code == 303, answer.text


async def accepted(web: httpx.AsyncClient, token: TokenFactory) -> dict[str, Any]:
    """A complaint accepted at intake's URL (the console here is investigation's)."""
    auth = {"Authorization": f"Bearer {token('agent')}"}
    async with httpx.AsyncClient(base_url=URLS[Service.INTAKE]) as intake:
        created = await intake.post("/complaints", json=intake_body(), headers=auth)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def forms(page: str) -> list[str]:
    """The commands a page offers, by their form's action."""
    return re.findall(r'action="/console/complaints/[0-9a-f-]{36}/commands/([a-z_]+)"', page)


def form_of(page: str, command: str) -> dict[str, str]:
    """The hidden fields of a command's form (version, idempotency key, task)."""
    start = page.index(f'/commands/{command}"')
    end = page.index("</form>", start)
    hidden = re.findall(r'type="hidden" name="([a-z_]+)" value="([^"]*)"', page[start:end])
    return {name: html.unescape(value) for name, value in hidden}


async def give(
    web: httpx.AsyncClient, cid: str, command: str, fields: dict[str, str]
) -> httpx.Response:
    """Open the complaint's page, fill the command's form as a user would, and send it."""
    page = await web.get(f"/console/complaints/{cid}")
    assert command in forms(page.text), (command, forms(page.text))
    data = {**form_of(page.text, command), **fields}
    return await web.post(f"/console/complaints/{cid}/commands/{command}", data=data, headers=SAME)


async def state(web: httpx.AsyncClient, token: TokenFactory, cid: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token('supervisor')}"}
    read = await web.get(f"/complaints/{cid}", headers=auth)
    body: dict[str, Any] = read.json()
    return body


async def test_each_role_sees_the_commands_it_may_give_now(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    cid = (await accepted(web, token))["id"]
    seen = {}
    for role in ("agent", "investigator", "supervisor", "callback", "analyst", "regulator"):
        await sign_in(web, token(role))
        seen[role] = forms((await web.get(f"/console/complaints/{cid}")).text)
    assert seen["supervisor"] == ["assign", "pause_clock", "escalate", "refuse"]
    assert seen["agent"] == ["escalate", "refuse"]
    assert seen["investigator"] == ["escalate"]  # nothing of an investigation not theirs
    assert seen["callback"] == ["escalate"]
    assert seen["analyst"] == [] and seen["regulator"] == []  # they never write


async def test_a_form_asks_what_its_route_takes(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    cid = (await accepted(web, token))["id"]
    await sign_in(web, token("supervisor", "sup-1"))
    page = (await web.get(f"/console/complaints/{cid}")).text
    start = page.index('id="cmd-assign"')
    assign = page[start : page.index("</details>", start)]
    assert re.findall(r'name="([a-z_.]+)"', assign) == [
        "version",
        "idempotency_key",
        "department",
        "investigator",
        "complexity",
    ]
    assert ">复杂<" in assign and 'value="complex"' in assign  # the code's label, its value sent
    assert "分派调查" in assign


def test_every_input_of_every_form_has_a_label_in_both_languages(settings: Settings) -> None:
    """The forms come from the routes' bodies: a field added to a body needs its label (and
    its choices theirs) before the console shows it as a bare name."""
    documents = {
        Service.INTAKE: intake_app(settings).openapi(),
        Service.INVESTIGATION: investigation_app(settings).openapi(),
        Service.ESCALATION: escalation_app(settings).openapi(),
        Service.CALLBACK: callback_app(settings).openapi(),
    }
    missing = []
    for command in [*OFFERED, Command.CONFIRM_NOTIFICATION]:
        service, path = ROUTES[command]
        doc = documents[service]
        body = doc["paths"][path.replace("{id}", "{complaint_id}")]["post"]["requestBody"]
        for f in form_fields(body["content"]["application/json"]["schema"], doc):
            for catalogue in (ZH, EN):
                keys = [f.label, *(f"{f.codes}.{choice}" for choice in f.choices)]
                missing += [(command.value, key) for key in keys if key not in catalogue]
    assert missing == []


async def test_a_whole_lifecycle_in_the_pages(web: httpx.AsyncClient, token: TokenFactory) -> None:
    cid = (await accepted(web, token))["id"]
    await sign_in(web, token("supervisor", "sup-1"))
    sent = await give(
        web,
        cid,
        "assign",
        {"department": "network-ops", "investigator": "inv-7", "complexity": "simple"},
    )
    assert sent.status_code == 303
    assert sent.headers["location"].endswith(f"/console/complaints/{cid}?done=assign")
    assert (await state(web, token, cid))["owner"] == "inv-7"

    await sign_in(web, token("investigator", "inv-7"))
    page = (await web.get(f"/console/complaints/{cid}")).text
    assert {"add_evidence", "pause_clock", "record_findings"} <= set(forms(page))
    steps = [
        ("add_evidence", {"kind": "system_log", "ref": "ALARM-4417", "summary": "告警 37 次"}),
        (
            "record_findings",
            {
                "conclusion": "基站 4417 传输故障",
                "basis": "《网络服务质量规范》第 7 条",
                "root_cause": "transmission_fault",
                "upheld": "true",
            },
        ),
        (
            "propose_resolution",
            {
                "measures": "更换传输板\n复测信号",
                "remedies.0.type": "fee_waiver",
                "remedies.0.amount": "30.00",
                "owner": "eng-7",
                "due_at": "2026-11-25T18:00",
            },
        ),
        (
            "reply",
            {
                "channel": "sms",
                "conclusion": "故障已修复",
                "basis": "第 7 条",
                "plan": "减免 30 元",
                "execution": "已完成",
            },
        ),
    ]
    for command, fields in steps:
        sent = await give(web, cid, command, fields)
        assert sent.status_code == 303, (command, sent.text[-2000:])
    now = await state(web, token, cid)
    assert now["status"] == "replied"
    assert now["resolution"]["measures"] == ["更换传输板", "复测信号"]
    assert now["resolution"]["remedies"] == [{"type": "fee_waiver", "amount": "30.00"}]
    assert now["findings"]["upheld"] is True

    await sign_in(web, token("callback", "cb-3"))
    done = await give(
        web, cid, "record_callback", {"reached": "true", "satisfaction": "satisfied",
                                      "resolved": "true", "comments": "信号已恢复"},
    )  # fmt: skip
    assert done.status_code == 303
    archived = await give(web, cid, "archive", {"summary": "已修复,客户满意"})
    assert archived.status_code == 303
    page = (await web.get(archived.headers["location"])).text
    assert "已记录" in page and "归档" in page
    assert forms(page) == []  # nothing left to do on an archived complaint
    history = re.findall(r'<td title="([A-Za-z]+)">[^<]*</td>\s*<td><time', page)
    assert history[-2:] == ["CallbackRecorded", "Archived"]
    assert (await state(web, token, cid))["status"] == "archived"


async def test_a_change_by_someone_else_meanwhile_is_a_sentence_and_nothing_is_lost(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    cid = (await accepted(web, token))["id"]
    await sign_in(web, token("supervisor", "sup-1"))
    page = (await web.get(f"/console/complaints/{cid}")).text
    seen = form_of(page, "assign")
    other = await give(web, cid, "pause_clock", {"reason": "等待客户提供材料"})  # someone else
    assert other.status_code == 303
    version = (await state(web, token, cid))["version"]
    late = await web.post(
        f"/console/complaints/{cid}/commands/assign",
        data={**seen, "department": "net", "investigator": "inv-7", "complexity": "simple"},
        headers=SAME,
    )
    assert late.status_code == 412
    assert "已被他人更新" in late.text
    assert 'value="inv-7"' in late.text  # what the user typed is still in the form
    assert (await state(web, token, cid))["version"] == version


async def test_a_command_the_status_forbids_is_a_409_sentence(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    cid = (await accepted(web, token))["id"]
    await sign_in(web, token("supervisor", "sup-1"))
    page = (await web.get(f"/console/complaints/{cid}")).text
    hidden = form_of(page, "assign")
    answer = await web.post(
        f"/console/complaints/{cid}/commands/archive",
        data={**hidden, "summary": "不应归档"},
        headers=SAME,
    )
    assert answer.status_code == 409
    assert "当前状态下不能执行此操作" in answer.text
    assert (await state(web, token, cid))["status"] == "accepted"


async def test_bad_input_is_shown_beside_its_field_and_stores_nothing(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    cid = (await accepted(web, token))["id"]
    await sign_in(web, token("supervisor", "sup-1"))
    version = (await state(web, token, cid))["version"]
    answer = await give(
        web, cid, "assign", {"department": "bad department!", "investigator": "", "complexity": ""}
    )
    assert answer.status_code == 422
    errors = re.findall(r'class="field-error" id="[^"]+" data-field="([a-z_.]+)"', answer.text)
    assert set(errors) == {"department", "investigator", "complexity"}
    assert 'id="cmd-assign" class="command" open' in answer.text
    assert (await state(web, token, cid))["version"] == version


async def test_a_command_form_from_another_site_is_refused(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    cid = (await accepted(web, token))["id"]
    await sign_in(web, token("supervisor", "sup-1"))
    answer = await web.post(
        f"/console/complaints/{cid}/commands/assign",
        data={"department": "net", "investigator": "inv-7", "complexity": "simple"},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert (await state(web, token, cid))["status"] == "accepted"


@pytest.mark.parametrize(
    "damage",
    [
        {"version": "²"},  # a digit to str.isdigit, not to a header
        {"version": ""},
        {"idempotency_key": "ключ", "version": "x"},
        {"notification": "../../../complaints"},
        {"notification": "reply-1?x=1#"},
    ],
)
async def test_a_damaged_form_is_a_plain_400_and_sends_nothing(
    web: httpx.AsyncClient, token: TokenFactory, damage: dict[str, str]
) -> None:
    cid = (await accepted(web, token))["id"]
    await sign_in(web, token("supervisor", "sup-1"))
    version = (await state(web, token, cid))["version"]
    page = (await web.get(f"/console/complaints/{cid}")).text
    data = {**form_of(page, "assign"), "department": "net", "investigator": "inv-7"}
    answer = await web.post(
        f"/console/complaints/{cid}/commands/assign",
        data={**data, "complexity": "simple", **damage},
        headers=SAME,
    )
    assert answer.status_code == 400, answer.text
    assert "表单已损坏" in answer.text
    assert (await state(web, token, cid))["version"] == version


async def test_a_key_no_header_can_carry_is_replaced_not_a_500(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    cid = (await accepted(web, token))["id"]
    await sign_in(web, token("supervisor", "sup-1"))
    page = (await web.get(f"/console/complaints/{cid}")).text
    answer = await web.post(
        f"/console/complaints/{cid}/commands/assign",
        data={**form_of(page, "assign"), "idempotency_key": "ключ", "department": "net",
              "investigator": "inv-7", "complexity": "simple"},
        headers=SAME,
    )  # fmt: skip
    assert answer.status_code == 303
    assert (await state(web, token, cid))["owner"] == "inv-7"


async def test_a_service_that_does_not_answer_costs_the_page_one_wait(
    web: httpx.AsyncClient, token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Escalation's document cannot be had: its forms say so, the others are there, and the
    next page does not ask again for a while."""
    cid = (await accepted(web, token))["id"]
    await sign_in(web, token("supervisor", "sup-1"))
    asked: list[str] = []
    routed = httpx.AsyncClient

    class Down(routed):  # type: ignore[misc,valid-type]
        def __init__(self, **kwargs: Any) -> None:
            if str(kwargs.get("base_url")) == URLS[Service.ESCALATION]:
                asked.append("escalation")
                kwargs["transport"] = httpx.MockTransport(self.refuse)
            super().__init__(**kwargs)

        @staticmethod
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectTimeout("", request=request)

    monkeypatch.setattr(client, "_documents", {})
    monkeypatch.setattr(httpx, "AsyncClient", Down)
    first = (await web.get(f"/console/complaints/{cid}")).text
    second = (await web.get(f"/console/complaints/{cid}")).text
    assert asked == ["escalation"]  # once, for both pages and all its forms
    for page in (first, second):
        assert "assign" in forms(page)  # investigation's form is there
        assert "暂时无法连接 escalation 服务" in page
