"""A regulator's appeal (申诉) taken down in the console, in-process over all four services:
the form is the escalation service's POST /appeals body; an appeal about a complaint we have
escalates it to headquarters with the regulator's deadline, one about a complaint we never
had accepts and escalates it in one step; a bad field comes back beside its input with
nothing stored; only the roles that may take an appeal see the page."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from shared.domain.codes import Service
from tests.conftest import TokenFactory, intake_body
from tests.integration.test_console_commands import (  # the console over the four services
    SAME,
    URLS,
    accepted,
    sign_in,
    state,
    web,
)

__all__ = ["web"]  # the fixture, used by name

#: The regulator's deadline, typed in the policy's time zone (Beijing) as the browser sends it.
TYPED_DUE = "2026-12-01T18:00"
DUE_UTC = "2026-12-01T10:00:00Z"


def key_of(page: str) -> str:
    (key,) = re.findall(r'name="idempotency_key" value="([^"]+)"', page)
    return key


def complaint_fields(body: dict[str, Any]) -> dict[str, str]:
    """A POST /complaints body as the appeal form's `complaint.` inputs."""
    fields: dict[str, str] = {}
    for name, value in body.items():
        if isinstance(value, dict):
            fields.update({f"complaint.{name}.{k}": str(v) for k, v in value.items()})
        elif name != "channel":
            fields[f"complaint.{name}"] = str(value)
    fields["complaint.occurred_at"] = "2026-11-20T08:30"
    return fields


async def listed(web: httpx.AsyncClient, token: TokenFactory, customer_id: str) -> list[Any]:
    auth = {"Authorization": f"Bearer {token('supervisor')}"}
    async with httpx.AsyncClient(base_url=URLS[Service.INTAKE]) as intake:
        page = await intake.get("/complaints", params={"customer_id": customer_id}, headers=auth)
    items: list[Any] = page.json()["items"]
    return items


async def test_an_appeal_about_a_complaint_we_have_escalates_it_to_headquarters(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    created = await accepted(web, token)
    await sign_in(web, token("agent"))
    page = await web.get(f"/console/complaints/{created['id']}")
    link = f'href="/console/appeal?acceptance_no={created["acceptance_no"]}"'
    assert link in page.text
    assert 'href="/console/appeal"' in page.text  # in the navigation too

    form = await web.get("/console/appeal", params={"acceptance_no": created["acceptance_no"]})
    assert form.status_code == 200
    assert f'name="acceptance_no" value="{created["acceptance_no"]}"' in form.text
    assert 'name="complaint.customer.phone"' in form.text  # the other kind, from the API's body
    assert 'name="complaint.channel"' not in form.text  # the regulator's, not asked
    data = {
        "idempotency_key": key_of(form.text),
        "about": "known",
        "regulator_ref": "MIIT-SS-2026-004211",
        "due_at": TYPED_DUE,
        "reason": "用户向工信部申诉",
        "acceptance_no": created["acceptance_no"],
        "complaint.customer.name": "typed, then the other kind was chosen",
    }
    answer = await web.post("/console/appeal", data=data, headers=SAME)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].endswith(f"/console/complaints/{created['id']}?done=escalate")

    now = await state(web, token, created["id"])
    assert now["status"] == "escalated" and now["level"] == "headquarters"
    assert now["escalations"][-1]["trigger"] == "regulator_appeal"
    assert now["escalations"][-1]["regulator_ref"] == "MIIT-SS-2026-004211"
    due = {d["name"]: d for d in now["deadlines"]}
    assert due["regulator_appeal"]["due_at"] == DUE_UTC

    again = await web.post("/console/appeal", data=data, headers=SAME)  # a double submit
    assert again.status_code == 303
    assert len((await state(web, token, created["id"]))["escalations"]) == 1


async def test_an_appeal_about_a_complaint_we_never_had_accepts_and_escalates_it(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(web, token("supervisor"))
    form = await web.get("/console/appeal")
    data = {
        "idempotency_key": key_of(form.text),
        "about": "new",
        "regulator_ref": "MIIT-SS-2026-000001",
        "due_at": TYPED_DUE,
        "reason": "Regulator appeal (申诉)",
        "acceptance_no": "",
        **complaint_fields(intake_body(customer={"id": "cust-appeal-1", "name": "王芳",
                                                 "phone": "13912345678"})),
    }  # fmt: skip
    answer = await web.post("/console/appeal", data=data, headers=SAME)
    assert answer.status_code == 303, answer.text
    (cid,) = re.findall(r"/console/complaints/([0-9a-f-]{36})\?", answer.headers["location"])

    now = await state(web, token, cid)
    assert now["channel"] == "regulator" and now["customer"]["id"] == "cust-appeal-1"
    assert now["status"] == "escalated" and now["level"] == "headquarters"
    assert now["escalations"][-1]["trigger"] == "regulator_appeal"
    due = {d["name"]: d for d in now["deadlines"]}
    assert due["regulator_appeal"]["due_at"] == DUE_UTC
    page = await web.get(f"/console/complaints/{cid}")
    assert page.status_code == 200 and now["acceptance_no"] in page.text


async def test_a_bad_field_comes_back_beside_its_input_and_nothing_is_stored(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(web, token("agent"))
    form = await web.get("/console/appeal")
    fields = complaint_fields(intake_body(customer={"id": "cust-appeal-2", "name": "赵磊",
                                                    "phone": "call me"}))  # fmt: skip
    data = {
        "idempotency_key": key_of(form.text),
        "about": "new",
        "regulator_ref": "MIIT-SS-2026-000002",
        "due_at": TYPED_DUE,
        "reason": "用户向工信部申诉",
        **fields,
    }
    answer = await web.post("/console/appeal", data=data, headers=SAME)
    assert answer.status_code == 422, answer.text
    assert re.search(
        r'<p class="field-error" id="appeal-complaint-customer-phone-error" '
        r'data-field="complaint.customer.phone">',
        answer.text,
    )
    assert 'value="call me"' in answer.text and 'value="赵磊"' in answer.text  # kept
    assert 'value="new" checked' in answer.text
    assert await listed(web, token, "cust-appeal-2") == []

    unknown = {**data, "about": "known", "acceptance_no": "not a number", "idempotency_key": "k-2"}
    answer = await web.post("/console/appeal", data=unknown, headers=SAME)
    assert answer.status_code == 422
    assert re.search(r'class="field-error" id="[^"]+" data-field="acceptance_no"', answer.text)
    assert await listed(web, token, "cust-appeal-2") == []


@pytest.mark.parametrize("role", ["callback", "investigator"])
async def test_a_role_that_may_not_take_an_appeal_sees_no_link_and_gets_a_403(
    web: httpx.AsyncClient, token: TokenFactory, role: str
) -> None:
    created = await accepted(web, token)
    await sign_in(web, token(role))
    page = await web.get(f"/console/complaints/{created['id']}")
    assert page.status_code == 200 and "/console/appeal" not in page.text
    assert "/console/appeal" not in (await web.get("/console/")).text
    assert (await web.get("/console/appeal")).status_code == 403
    data = {
        "about": "known",
        "regulator_ref": "MIIT-SS-2026-000003",
        "due_at": TYPED_DUE,
        "acceptance_no": created["acceptance_no"],
    }
    posted = await web.post("/console/appeal", data=data, headers=SAME)
    assert posted.status_code == 403  # the API's answer
    assert (await state(web, token, created["id"]))["status"] == "accepted"


async def test_an_appeal_from_another_origin_is_refused(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    created = await accepted(web, token)
    await sign_in(web, token("agent"))
    data = {
        "about": "known",
        "regulator_ref": "MIIT-SS-2026-000004",
        "due_at": TYPED_DUE,
        "acceptance_no": created["acceptance_no"],
    }
    foreign = await web.post(
        "/console/appeal", data=data, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    assert (await web.post("/console/appeal", data=data)).status_code == 403  # no origin
    assert (await state(web, token, created["id"]))["status"] == "accepted"
