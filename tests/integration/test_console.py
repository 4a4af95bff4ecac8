"""The console (`/console/`) in-process: sign-in (the development picker only in development),
the queues, a complaint's page as each role may see it, the new-complaint form with the API's
field errors, the same-origin check on every POST, and pages that load nothing from another
host. (The browser walk through real processes is a test of its own.)"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.intake.main import create_app
from services.investigation.main import create_app as create_investigation_app
from shared.console import pages
from shared.domain.clock import FixedClock
from shared.domain.codes import Service
from shared.settings import Settings
from tests.conftest import TokenFactory, intake_body

#: The console is served over https in these tests, so its Secure cookie is sent back.
ORIGIN = "https://test"
SAME = {"Origin": ORIGIN}


@asynccontextmanager
async def console_client(settings: Settings, clock: FixedClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            yield client


@pytest.fixture
async def web(settings: Settings, clock: FixedClock) -> AsyncIterator[httpx.AsyncClient]:
    """The console of a production service (`make` exports development: said here)."""
    production = settings.model_copy(update={"environment": "production"})
    async with console_client(production, clock) as client:
        yield client


@pytest.fixture
async def dev_web(settings: Settings, clock: FixedClock) -> AsyncIterator[httpx.AsyncClient]:
    """The console of a service in development (`make run`)."""
    dev = settings.model_copy(update={"environment": "development"})
    async with console_client(dev, clock) as client:
        yield client


async def sign_in(client: httpx.AsyncClient, token: str) -> None:
    """Sign in by pasting a bearer token, as in production."""
    answer = await client.post("/console/signin", data={"token": token}, headers=SAME)
    assert answer.status_code == 303, answer.text


async def accept(
    client: httpx.AsyncClient, token: TokenFactory, **overrides: Any
) -> dict[str, Any]:
    """A complaint accepted through the JSON API, and the list caught up with it."""
    auth = {"Authorization": f"Bearer {token('agent')}"}
    created = await client.post("/complaints", json=intake_body(**overrides), headers=auth)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    listed = await client.get(
        "/complaints", params={"min_position": body["position"], "limit": 1}, headers=auth
    )
    assert listed.status_code == 200
    return body


# -- sign-in ------------------------------------------------------------------------------------


async def test_development_signs_in_with_the_role_and_name_picker(
    dev_web: httpx.AsyncClient,
) -> None:
    page = await dev_web.get("/console/")
    assert page.status_code == 200
    assert 'id="dev-signin"' in page.text and 'name="role"' in page.text

    signed = await dev_web.post(
        "/console/signin", data={"role": "supervisor", "name": "sup-042"}, headers=SAME
    )
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"].lower()
    assert "console_token=" in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert "secure" not in cookie  # development runs on plain http

    home = await dev_web.get("/console/")
    assert home.status_code == 200
    assert "sup-042" in home.text and "工作队列" in home.text
    assert 'href="/console/new"' in home.text  # a supervisor may accept

    out = await dev_web.post("/console/signout", headers=SAME)
    assert out.status_code == 303
    assert 'id="dev-signin"' in (await dev_web.get("/console/")).text


async def test_production_has_no_picker_but_takes_a_pasted_token(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    page = await web.get("/console/")
    assert page.status_code == 200
    assert "dev-signin" not in page.text and 'name="role"' not in page.text
    assert 'name="token"' in page.text

    minted = await web.post(
        "/console/signin", data={"role": "admin", "name": "mallory"}, headers=SAME
    )
    assert minted.status_code == 403
    assert "set-cookie" not in minted.headers

    forged = await web.post("/console/signin", data={"token": "not.a.jwt"}, headers=SAME)
    assert forged.status_code == 401
    assert "set-cookie" not in forged.headers

    pasted = await web.post(
        "/console/signin", data={"token": token("investigator", "inv-7")}, headers=SAME
    )
    assert pasted.status_code == 303
    assert "secure" in pasted.headers["set-cookie"].lower()
    home = await web.get("/console/")
    assert "inv-7" in home.text
    assert 'href="/console/new"' not in home.text  # an investigator does not accept


async def test_a_session_whose_token_no_longer_verifies_signs_in_again(
    web: httpx.AsyncClient,
) -> None:
    web.cookies.set("console_token", "expired.or.forged", domain="test", path="/console")
    page = await web.get("/console/")
    assert page.status_code == 200
    assert 'name="token"' in page.text and "工作队列" not in page.text


# -- language -----------------------------------------------------------------------------------


async def test_pages_are_chinese_first_and_english_on_the_switch(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(web, token("agent"))
    zh = await web.get("/console/")
    assert '<html lang="zh-CN">' in zh.text and "工作队列" in zh.text and "新建投诉" in zh.text

    switched = await web.get("/console/language/en", params={"next": "/console/?view=tasks"})
    assert switched.status_code == 303
    assert switched.headers["location"] == "/console/?view=tasks"
    en = await web.get("/console/")
    assert '<html lang="en">' in en.text and "Queues" in en.text and "New complaint" in en.text
    assert "工作队列" not in en.text

    away = await web.get("/console/language/zh", params={"next": "https://evil.example/"})
    assert away.headers["location"] == "/console/"
    assert "工作队列" in (await web.get("/console/")).text


# -- queues -------------------------------------------------------------------------------------


async def test_the_queue_shows_an_accepted_complaint_and_its_filters_work(
    web: httpx.AsyncClient, token: TokenFactory, clock: FixedClock
) -> None:
    created = await accept(web, token)
    number = created["acceptance_no"]
    await sign_in(web, token("supervisor", "sup-1"))

    queue = await web.get("/console/")
    assert number in queue.text
    assert f'href="/console/complaints/{created["id"]}"' in queue.text
    assert re.search(r'class="countdown" data-due="[^"]+">\d', queue.text)  # one running limit

    assert number not in (await web.get("/console/", params={"view": "overdue"})).text
    due = min(
        datetime.fromisoformat(d["due_at"]) for d in created["deadlines"] if d["state"] == "running"
    )
    hours = math.ceil((due - clock()).total_seconds() / 3600) + 1  # due strictly before
    assert hours > 1
    within = await web.get("/console/", params={"view": "due", "hours": hours})
    assert number in within.text
    assert number not in (await web.get("/console/", params={"view": "due", "hours": 1})).text
    assert number not in (await web.get("/console/", params={"view": "mine"})).text
    searched = await web.get("/console/", params={"by": "acceptance_no", "q": number})
    assert number in searched.text
    by_phone = await web.get("/console/", params={"by": "phone", "q": "139 0000 0000"})
    assert number not in by_phone.text
    assert number in (await web.get("/console/", params={"by": "customer_id", "q": "cust-1"})).text

    clock.advance(timedelta(days=60))  # every limit of the complaint has passed unmet
    overdue = await web.get("/console/", params={"view": "overdue"})
    assert number in overdue.text
    assert re.search(r'class="countdown late" data-due="[^"]+">已超时 \d', overdue.text)


async def test_a_search_the_api_refuses_shows_its_reason(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(web, token("agent"))
    page = await web.get("/console/", params={"by": "phone", "q": "+++"})
    assert page.status_code == 422
    assert 'class="error"' in page.text


# -- a complaint's page -------------------------------------------------------------------------


async def test_the_complaint_page_masks_the_phone_for_an_analyst_not_for_an_agent(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    created = await accept(web, token)
    path = f"/console/complaints/{created['id']}"

    await sign_in(web, token("agent"))
    seen = await web.get(path)
    assert seen.status_code == 200
    assert "13812341234" in seen.text and "138****1234" not in seen.text
    assert created["acceptance_no"] in seen.text
    deadline = created["deadlines"][0]
    assert deadline["source"] in seen.text and deadline["policy_version"] in seen.text
    assert "<progress" in seen.text
    assert "Accepted" in seen.text  # the timeline's first event, with its hash shortened
    history = (
        await web.get(
            f"/complaints/{created['id']}/history",
            headers={"Authorization": f"Bearer {token('agent')}"},
        )
    ).json()
    first = history["events"][0]
    assert first["hash"][:12] in seen.text and first["actor"]["id"] in seen.text

    await sign_in(web, token("analyst"))
    masked = await web.get(path)
    assert masked.status_code == 200
    assert "138****1234" in masked.text and "13812341234" not in masked.text
    assert "zhang.wei@example.cn" not in masked.text


async def test_the_time_slider_shows_the_complaint_as_it_stood(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    created = await accept(web, token)
    await sign_in(web, token("supervisor"))
    path = f"/console/complaints/{created['id']}"
    then = await web.get(path, params={"as_of": created["accepted_at"]})
    assert then.status_code == 200
    assert 'class="note as-of"' in then.text

    before = await web.get(path, params={"as_of": "2020-01-01T00:00:00+08:00"})
    assert before.status_code == 404  # the API's answer: it did not exist yet
    assert 'class="error"' in before.text


# -- the new-complaint form ---------------------------------------------------------------------

FORM = {
    "channel": "hotline",
    "customer.id": "cust-form-1",
    "customer.name": "李娜",
    "customer.phone": "13900001111",
    "customer.email": "",
    "customer.vip_tier": "gold",
    "service_number": "13900001111",
    "business_type": "broadband",
    "category": "fault_repair",
    "area": "urban",
    "occurred_at": "2026-11-22T09:15",
    "received_at": "",
    "description": "宽带断线两天。",
    "demand": "尽快上门维修",
    "reply_channel": "phone",
    "idempotency_key": "form-key-1",
}


async def listed(web: httpx.AsyncClient, token: TokenFactory, customer_id: str) -> list[Any]:
    auth = {"Authorization": f"Bearer {token('agent')}"}
    page = await web.get("/complaints", params={"customer_id": customer_id}, headers=auth)
    items: list[Any] = page.json()["items"]
    return items


async def test_the_new_complaint_form_accepts_and_shows_the_acceptance_number(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(web, token("agent", "agent-9"))
    form = await web.get("/console/new")
    assert form.status_code == 200
    assert 'name="customer.phone"' in form.text and 'name="idempotency_key"' in form.text

    request_id = str(uuid.uuid4())
    answer = await web.post("/console/new", data=FORM, headers={**SAME, "X-Request-ID": request_id})
    assert answer.status_code == 201, answer.text
    (complaint_id,) = re.findall(r'href="/console/complaints/([0-9a-f-]{36})"', answer.text)
    created = await web.get(
        f"/complaints/{complaint_id}", headers={"Authorization": f"Bearer {token('agent')}"}
    )
    complaint = created.json()
    assert f'id="acceptance-no">{complaint["acceptance_no"]}<' in answer.text
    assert complaint["customer"]["name"] == "李娜" and complaint["customer"]["vip_tier"] == "gold"
    typed = datetime.fromisoformat(complaint["occurred_at"])  # typed in Beijing time
    assert typed == datetime(2026, 11, 22, 1, 15, tzinfo=UTC)
    history = await web.get(
        f"/complaints/{complaint_id}/history",
        headers={"Authorization": f"Bearer {token('agent')}"},
    )
    accepted = history.json()["events"][0]
    assert accepted["actor"]["id"] == "agent-9"  # the signed-in user, not the console
    assert accepted["correlation_id"] == request_id  # the page's request, end to end

    again = await web.post("/console/new", data=FORM, headers=SAME)  # a double submit
    assert again.status_code == 201
    assert re.findall(r'href="/console/complaints/([0-9a-f-]{36})"', again.text) == [complaint_id]


async def test_a_bad_form_shows_the_apis_error_next_to_its_field(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(web, token("agent"))
    bad = {**FORM, "customer.phone": "call me", "idempotency_key": "form-key-2"}
    answer = await web.post("/console/new", data=bad, headers=SAME)
    assert answer.status_code == 422
    assert re.search(
        r'<p class="field-error" id="f-customer-phone-error" data-field="customer.phone">',
        answer.text,
    )
    assert 'id="f-customer-name-error"' not in answer.text  # the others have no error
    assert 'value="call me"' in answer.text  # what was typed is kept
    assert 'value="李娜"' in answer.text
    assert await listed(web, token, "cust-form-1") == []


async def test_a_role_that_may_not_accept_gets_no_form(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(web, token("analyst"))
    assert (await web.get("/console/new")).status_code == 403
    posted = await web.post("/console/new", data=FORM, headers=SAME)
    assert posted.status_code == 403  # the API's answer
    assert await listed(web, token, "cust-form-1") == []


# -- CSRF, hosts, the OpenAPI -------------------------------------------------------------------


async def test_a_console_post_from_another_origin_is_refused(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(web, token("agent"))
    foreign = await web.post("/console/new", data=FORM, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    no_origin = await web.post("/console/new", data=FORM)
    assert no_origin.status_code == 403
    referred = await web.post(
        "/console/new",
        data={**FORM, "idempotency_key": "form-key-3"},
        headers={"Referer": "http://test/console/new"},  # another scheme: another origin
    )
    assert referred.status_code == 403
    assert await listed(web, token, "cust-form-1") == []
    signin = await web.post(
        "/console/signin",
        data={"token": token("admin")},
        headers={"Origin": "https://evil.example"},
    )
    assert signin.status_code == 403 and "set-cookie" not in signin.headers
    out = await web.post("/console/signout", headers={"Origin": "https://evil.example"})
    assert out.status_code == 403 and "set-cookie" not in out.headers


async def test_console_pages_reference_no_other_host(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    signin = await web.get("/console/")
    created = await accept(web, token)
    await sign_in(web, token("supervisor"))
    pages = [
        signin,
        await web.get("/console/"),
        await web.get(f"/console/complaints/{created['id']}"),
        await web.get("/console/new"),
        await web.post("/console/new", data=FORM, headers=SAME),
        await web.get("/console/static/console.css"),
        await web.get("/console/static/console.js"),
    ]
    for page in pages:
        assert page.status_code in (200, 201), page.url
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]", page.text, re.I), page.url
    for page in pages[:5]:
        assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_the_console_stays_out_of_the_openapi(web: httpx.AsyncClient) -> None:
    paths = (await web.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/console")]


async def test_a_command_another_service_serves_goes_to_it_by_its_url(
    settings: Settings, clock: FixedClock, token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console of the investigation service sends an acceptance to intake, at the URL the
    settings give (here routed in-process to an intake app), and intake records it."""
    intake = create_app(settings, clock=clock)
    called: list[str] = []

    class ToIntake(httpx.AsyncClient):
        def __init__(self, **kwargs: Any) -> None:
            if "transport" not in kwargs:  # a call by URL
                called.append(str(kwargs["base_url"]))
                kwargs["transport"] = httpx.ASGITransport(app=intake)
            super().__init__(**kwargs)

    urls = {**settings.console_service_urls, Service.INTAKE: "http://intake.internal:8001"}
    here = create_investigation_app(
        settings.model_copy(update={"console_service_urls": urls, "dispatcher_enabled": False}),
        clock=clock,
    )
    async with intake.router.lifespan_context(intake), here.router.lifespan_context(here):
        transport = httpx.ASGITransport(app=here)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as web:
            await sign_in(web, token("agent", "agent-5"))
            monkeypatch.setattr(httpx, "AsyncClient", ToIntake)
            answer = await web.post("/console/new", data=FORM, headers=SAME)
            monkeypatch.undo()
            assert answer.status_code == 201, answer.text
            (complaint_id,) = re.findall(r'href="/console/complaints/([0-9a-f-]{36})"', answer.text)
            page = await web.get(f"/console/complaints/{complaint_id}")  # read here
    # the acceptance, and the form's fields (intake's OpenAPI document, unless kept from before)
    assert set(called) == {"http://intake.internal:8001"}
    assert page.status_code == 200 and "李娜" in page.text
    assert re.search(r"<td>intake</td>", page.text)  # the event's service


async def test_the_queue_pages_on_with_the_lists_cursor(
    web: httpx.AsyncClient, token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "PAGE_SIZE", 1)
    first = await accept(web, token, customer={**intake_body()["customer"], "id": "cust-a"})
    second = await accept(web, token, customer={**intake_body()["customer"], "id": "cust-b"})
    await sign_in(web, token("supervisor"))
    numbers = {first["acceptance_no"], second["acceptance_no"]}
    page = await web.get("/console/", params={"view": "all"})
    shown = {n for n in numbers if n in page.text}
    assert len(shown) == 1
    (link,) = re.findall(r'<a rel="next" href="([^"]+)"', page.text)
    following = await web.get(link.replace("&amp;", "&"))
    assert following.status_code == 200
    assert {n for n in numbers if n in following.text} == numbers - shown
    assert 'rel="next"' not in following.text
    assert "第一页" in following.text
