"""The callback service over HTTP: the whole lifecycle to the archive, and the dissatisfied
branch to escalation."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import intake_body
from tests.integration.conftest import Api
from tests.integration.test_investigation import BODIES, command


async def _replied(api: Api, inv: Api) -> str:
    cid = str((await api.accept(intake_body())).json()["id"])
    for step in ("assignment", "findings", "resolution", "reply"):
        assert (await command(inv, cid, step, BODIES[step])).status_code == 200, step
    return cid


async def call(
    cb: Api, cid: str, path: str, body: dict[str, object], role: str = "callback"
) -> httpx.Response:
    return await cb.client.post(
        f"/complaints/{cid}/{path}", json=body, headers=cb.headers(role, f"{role}-3")
    )


async def test_the_whole_lifecycle_to_the_archive(api: Api, inv: Api, cb: Api) -> None:
    cid = await _replied(api, inv)
    missed = await call(cb, cid, "callback", {"reached": False, "comments": "无人接听"})
    assert missed.status_code == 200, missed.text
    assert missed.json()["status"] == "replied"
    assert len(missed.json()["callback_attempts"]) == 1
    early = await call(cb, cid, "archive", {"summary": "x"})
    assert early.status_code == 409  # not before a satisfied callback

    done = await call(
        cb, cid, "callback", {"satisfaction": "satisfied", "resolved": True, "comments": "满意"}
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "callback_done"
    archived = await call(cb, cid, "archive", {"summary": "已修复,客户满意"})
    assert archived.status_code == 200
    assert archived.json()["status"] == "archived"
    history = (await cb.get(f"/complaints/{cid}/history")).json()["events"]
    assert [e["type"] for e in history][-3:] == [
        "CallbackUnreached",
        "CallbackRecorded",
        "Archived",
    ]

    again = await command(inv, cid, "evidence", BODIES["evidence"])
    assert again.status_code == 409 and again.json()["current_status"] == "archived"
    repeat = (await api.accept(intake_body())).json()
    assert repeat["repeat_of"] == cid  # a new complaint links to the archived one


@pytest.mark.parametrize(
    "answer",
    [
        {"satisfaction": "dissatisfied", "resolved": True, "comments": "态度差"},
        {"satisfaction": "basically_satisfied", "resolved": False, "comments": "仍无信号"},
    ],
)
async def test_dissatisfied_or_unresolved_escalates_never_closes(
    api: Api, inv: Api, cb: Api, answer: dict[str, object]
) -> None:
    cid = await _replied(api, inv)
    response = await call(cb, cid, "callback", answer)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "escalated"
    assert body["escalations"][-1]["trigger"] == "customer_dissatisfied"
    assert body["level"] == "provincial"
    assert (await call(cb, cid, "archive", {"summary": "x"})).status_code == 409


async def test_callback_roles_and_bad_bodies(api: Api, inv: Api, cb: Api) -> None:
    cid = await _replied(api, inv)
    good = {"satisfaction": "satisfied", "resolved": True, "comments": ""}
    for role in ("agent", "investigator", "regulator", "analyst"):
        assert (await call(cb, cid, "callback", good, role)).status_code == 403, role
    assert (await call(cb, cid, "callback", {"comments": "?"})).status_code == 422
    assert (await call(cb, cid, "callback", {**good, "satisfaction": "ok"})).status_code == 422
    assert (await call(cb, cid, "callback", good, "supervisor")).status_code == 200
