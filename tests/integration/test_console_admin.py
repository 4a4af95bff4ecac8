"""The admin page, in-process over all four services (the console is investigation's; the
subscriptions and the erasure are intake's, reached at its URL): an admin subscribes through
the form built from POST /subscriptions' body and sees the secret once, finds the subscription
listed and on its page, and deletes it; a bad URL is shown beside its field; an erasure needs
the customer id typed again and then erases everywhere; a non-admin has no link and gets a
403; a form from another site is refused."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

import httpx

from services.intake.main import create_app as intake_app
from shared.console.commands import form_fields
from shared.console.i18n import EN, ZH
from shared.domain.codes import Service
from shared.http.routes import ERASURE, SUBSCRIPTIONS
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import TokenFactory, intake_body
from tests.integration import test_console_commands as commands_tests
from tests.integration.conftest import database_blobs
from tests.integration.test_console_commands import SAME, URLS, sign_in

#: The console of investigation with the other services at their URLs (in-process).
web = commands_tests.web

RECEIVER = "https://crm.example.cn/hooks/complaints"


def hidden(page: str, form_id: str) -> dict[str, str]:
    """The hidden fields of a form on the page."""
    start = page.index(f'id="{form_id}"')
    end = page.index("</form>", start)
    found = re.findall(r'type="hidden" name="([a-z_]+)" value="([^"]*)"', page[start:end])
    return {name: html.unescape(value) for name, value in found}


def field_errors(page: str) -> dict[str, str]:
    found = re.findall(r'class="field-error" id="[^"]+" data-field="([a-z_.]+)">([^<]*)<', page)
    return {name: html.unescape(text) for name, text in found}


async def intake(method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=URLS[Service.INTAKE]) as client:
        return await client.request(method, path, headers=auth, **kwargs)


async def listed(customer: str, token: str) -> None:
    """Wait for the list (a projection, caught up in the background) to hold the customer's
    complaint."""
    for _ in range(100):
        found = await intake("GET", "/complaints", token, params={"customer_id": customer})
        if found.json()["items"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the list never held {customer}'s complaint")


async def subscribe(web: httpx.AsyncClient, fields: dict[str, Any]) -> httpx.Response:
    page = (await web.get("/console/admin")).text
    data = {**hidden(page, "subscribe"), **fields}
    return await web.post("/console/admin/subscriptions", data=data, headers=SAME)


def test_the_paths_the_page_calls_are_intakes_routes(settings: Settings) -> None:
    document = intake_app(settings).openapi()
    service, path = SUBSCRIPTIONS
    assert service == Service.INTAKE and ERASURE[0] == Service.INTAKE
    assert {"get", "post"} <= set(document["paths"][path])
    assert "delete" in document["paths"][path + "/{subscription_id}"]
    assert "post" in document["paths"][ERASURE[1]]


def test_the_subscription_form_has_a_label_in_both_languages(settings: Settings) -> None:
    document = intake_app(settings).openapi()
    body = document["paths"][SUBSCRIPTIONS[1]]["post"]["requestBody"]
    fields = form_fields(body["content"]["application/json"]["schema"], document)
    assert [(f.name, f.kind) for f in fields] == [
        ("url", "text"),
        ("event_types", "many"),
        ("sees_personal_data", "bool"),
    ]
    assert "Complaint.Accepted" in fields[1].choices
    assert [f.label for f in fields for cat in (ZH, EN) if f.label not in cat] == []


async def test_an_admin_subscribes_sees_the_secret_once_and_deletes_it(
    web: httpx.AsyncClient, token: TokenFactory, store: ComplaintStore
) -> None:
    await sign_in(web, token("admin", "ops-1"))
    home = await web.get("/console/")
    assert 'href="/console/admin"' in home.text
    page = await web.get("/console/admin")
    assert page.status_code == 200
    assert 'id="no-subscriptions"' in page.text
    # the form asks what the route takes: a URL, a box per event type, personal data yes/no
    assert re.findall(r'name="([a-z_]+)"', page.text[page.text.index('id="subscribe"') :])[:4] == [
        "idempotency_key",
        "url",
        "event_types",
        "event_types",
    ]

    form = {
        "url": RECEIVER,
        "event_types": ["Complaint.Accepted", "Complaint.Replied"],
        "sees_personal_data": "false",
    }
    page = await web.get("/console/admin")
    data = {**hidden(page.text, "subscribe"), **form}
    created = await web.post("/console/admin/subscriptions", data=data, headers=SAME)
    assert created.status_code == 201, created.text
    secret = re.search(r'id="secret-value">(whsec_[^<]+)<', created.text)
    assert secret is not None
    assert "只显示这一次" in created.text

    listed = (await intake("GET", "/subscriptions", token("admin"))).json()
    assert [(s["url"], s["event_types"]) for s in listed] == [
        (RECEIVER, ["Complaint.Accepted", "Complaint.Replied"])
    ]
    sid = listed[0]["id"]

    # the same form again (a double submit, a reload): one subscription, no secret shown
    again = await web.post("/console/admin/subscriptions", data=data, headers=SAME)
    assert again.status_code == 201
    assert 'id="secret-gone"' in again.text and "whsec_" not in again.text
    # ... nor kept anywhere: no table holds it (the stored answers of the two posts included)
    blobs = await database_blobs(store.engine)
    assert [name for name, blob in blobs.items() if secret.group(1).encode() in blob] == []
    assert len((await intake("GET", "/subscriptions", token("admin"))).json()) == 1

    page = await web.get("/console/admin")
    assert f'href="/console/admin/subscriptions/{sid}"' in page.text and RECEIVER in page.text
    one = await web.get(f"/console/admin/subscriptions/{sid}")
    assert one.status_code == 200
    assert "whsec_" not in one.text and secret.group(1) not in one.text  # a second look
    assert RECEIVER in one.text and 'id="no-deliveries"' in one.text

    deleted = await web.post(
        f"/console/admin/subscriptions/{sid}/delete",
        data=hidden(one.text, "unsubscribe"),
        headers=SAME,
    )
    assert deleted.status_code == 303
    assert deleted.headers["location"] == f"/console/admin?deleted={sid}"
    page = await web.get(deleted.headers["location"])
    assert 'id="deleted"' in page.text and 'id="no-subscriptions"' in page.text
    assert (await intake("GET", "/subscriptions", token("admin"))).json() == []
    gone = await web.get(f"/console/admin/subscriptions/{sid}")
    assert gone.status_code == 410


async def test_a_bad_url_is_shown_beside_its_field_and_nothing_is_kept(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(web, token("admin", "ops-1"))
    for url, says in [
        ("not a url", "http(s) URL"),
        ("http://crm.example.cn/hooks", "https"),  # outside development: https only
        ("https://127.0.0.1/hooks", "loopback"),
    ]:
        answer = await subscribe(web, {"url": url, "event_types": "Complaint.Accepted"})
        assert answer.status_code == 422, answer.text
        errors = field_errors(answer.text)
        assert list(errors) == ["url"] and says in errors["url"], errors
        assert f'value="{html.escape(url)}"' in answer.text  # as typed, to mend
        assert re.search(r'value="Complaint.Accepted" checked', answer.text)
    none = await subscribe(web, {"url": RECEIVER})
    assert list(field_errors(none.text)) == ["event_types"]
    assert (await intake("GET", "/subscriptions", token("admin"))).json() == []


async def test_a_non_admin_has_no_link_and_is_refused(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    for role in ("agent", "supervisor", "regulator"):
        await sign_in(web, token(role))
        assert 'href="/console/admin"' not in (await web.get("/console/")).text
        page = await web.get("/console/admin")
        assert page.status_code == 403
        assert 'id="subscribe"' not in page.text
        refused = await web.post(
            "/console/admin/subscriptions",
            data={"url": RECEIVER, "event_types": "Complaint.Accepted"},
            headers=SAME,
        )
        assert refused.status_code == 403
        erase = await web.post(
            "/console/admin/erasure", data={"customer_id": "cust-1"}, headers=SAME
        )
        assert erase.status_code == 403
        confirmed = await web.post(
            "/console/admin/erasure/confirmed",
            data={"customer_id": "cust-1", "confirmation": "cust-1"},
            headers=SAME,
        )
        assert confirmed.status_code == 403
    assert (await intake("GET", "/subscriptions", token("admin"))).json() == []


async def test_an_erasure_needs_the_id_typed_again_then_erases_everywhere(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    agent = token("agent")
    accepted = await intake(
        "POST", "/complaints", agent, json=intake_body(customer={
            "id": "cust-900", "name": "李娜", "phone": "13900001111",
        })
    )  # fmt: skip
    assert accepted.status_code == 201, accepted.text
    cid = accepted.json()["id"]
    await listed("cust-900", agent)
    await sign_in(web, token("admin", "ops-1"))

    bad = await web.post("/console/admin/erasure", data={"customer_id": "../x"}, headers=SAME)
    assert bad.status_code == 422 and list(field_errors(bad.text)) == ["customer_id"]

    confirm = await web.post(
        "/console/admin/erasure", data={"customer_id": " cust-900 "}, headers=SAME
    )
    assert confirm.status_code == 200
    assert 'id="irreversible"' in confirm.text and "cust-900" in confirm.text
    assert accepted.json()["acceptance_no"] in confirm.text  # its complaints, listed
    form = hidden(confirm.text, "erase-confirmed")
    assert form["customer_id"] == "cust-900"

    mismatch = await web.post(
        "/console/admin/erasure/confirmed",
        data={**form, "confirmation": "cust-901"},
        headers=SAME,
    )
    assert mismatch.status_code == 422
    assert list(field_errors(mismatch.text)) == ["confirmation"]
    view = (
        await web.get(f"/complaints/{cid}", headers={"Authorization": f"Bearer {agent}"})
    ).json()
    assert view["customer"]["name"] == "李娜"  # nothing erased

    erased = await web.post(
        "/console/admin/erasure/confirmed",
        data={**form, "confirmation": "cust-900"},
        headers=SAME,
    )
    assert erased.status_code == 200, erased.text
    assert re.search(r'id="keys-destroyed">1<', erased.text)
    assert f'href="/console/complaints/{cid}"' in erased.text
    view = (
        await web.get(f"/complaints/{cid}", headers={"Authorization": f"Bearer {agent}"})
    ).json()
    assert view["customer"]["name"] == "[erased]" and view["customer"]["phone"] == "[erased]"
    assert view["personal_data_erased_at"]

    # again (a new confirmation): harmless, and said so
    confirm = await web.post(
        "/console/admin/erasure", data={"customer_id": "cust-900"}, headers=SAME
    )
    again = await web.post(
        "/console/admin/erasure/confirmed",
        data={**hidden(confirm.text, "erase-confirmed"), "confirmation": "cust-900"},
        headers=SAME,
    )
    assert again.status_code == 200
    assert re.search(r'id="keys-destroyed">0<', again.text) and "此前已删除过" in again.text

    # a customer we hold nothing of: the API's 404, as a sentence
    confirm = await web.post(
        "/console/admin/erasure", data={"customer_id": "cust-404"}, headers=SAME
    )
    assert 'id="no-complaints"' in confirm.text
    unknown = await web.post(
        "/console/admin/erasure/confirmed",
        data={**hidden(confirm.text, "erase-confirmed"), "confirmation": "cust-404"},
        headers=SAME,
    )
    assert unknown.status_code == 404
    assert (
        'id="nothing-held"' in unknown.text and "没有保存客户 cust-404 的任何信息" in unknown.text
    )


async def test_a_form_from_another_site_is_refused(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    agent = token("agent")
    accepted = await intake("POST", "/complaints", agent, json=intake_body())
    cid = accepted.json()["id"]
    await sign_in(web, token("admin", "ops-1"))
    created = await subscribe(web, {"url": RECEIVER, "event_types": "Complaint.Accepted"})
    assert created.status_code == 201
    sid = (await intake("GET", "/subscriptions", token("admin"))).json()[0]["id"]
    evil = {"Origin": "https://evil.example"}
    posts = [
        ("/console/admin/subscriptions", {"url": RECEIVER, "event_types": "Complaint.Replied"}),
        (f"/console/admin/subscriptions/{sid}/delete", {}),
        ("/console/admin/erasure", {"customer_id": "cust-1"}),
        ("/console/admin/erasure/confirmed", {"customer_id": "cust-1", "confirmation": "cust-1"}),
    ]
    for path, data in posts:
        answer = await web.post(path, data=data, headers=evil)
        assert answer.status_code == 403, path
    assert [s["id"] for s in (await intake("GET", "/subscriptions", token("admin"))).json()] == [
        sid
    ]
    view = (
        await web.get(f"/complaints/{cid}", headers={"Authorization": f"Bearer {agent}"})
    ).json()
    assert view["customer"]["name"] == "张伟"
