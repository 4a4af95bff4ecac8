"""Accept → read → history → as_of, over HTTP, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from shared.audit.verify import committed_data, digest
from shared.domain.chain import GENESIS, chain
from shared.domain.clock import FixedClock
from shared.domain.personal import as_record
from shared.store.facade import ComplaintStore
from tests.conftest import intake_body
from tests.integration.conftest import Api
from tests.integration.test_investigation import BODIES, command


async def test_accept_read_history_and_as_of(api: Api, clock: FixedClock) -> None:
    accepted = await api.accept(intake_body())
    assert accepted.status_code == 201, accepted.text
    complaint = accepted.json()
    assert complaint["status"] == "accepted"
    assert complaint["owner"] == "agent-1"
    assert accepted.headers["ETag"] == '"1"'
    assert accepted.headers["Location"] == f"/complaints/{complaint['id']}"
    # Readable on the phone: date, six digits, a check digit.
    assert len(complaint["acceptance_no"].split("-")) == 3
    names = {d["name"]: d for d in complaint["deadlines"]}
    # Mobile network complaint accepted on Monday 23 Nov 2026, 10:00 in Beijing:
    # reply within 2 working days = by the end of Wednesday 25 Nov (Beijing time).
    assert names["reply"]["due_at"] == "2026-11-25T15:59:59Z"
    assert names["reply"]["state"] == "running"
    assert names["reply"]["policy_version"] == "2026.2"

    clock.advance(timedelta(hours=1))
    refused = await api.client.post(
        f"/complaints/{complaint['id']}/refusal",
        json={"reason": "out_of_scope", "explanation": "第三方应用", "redirect": "应用提供商"},
        headers=api.headers("supervisor", "sup-9", **{"If-Match": '"1"'}),
    )
    assert refused.status_code == 200, refused.text
    assert refused.json()["status"] == "refused"
    assert refused.headers["ETag"] == '"2"'

    read = await api.get(f"/complaints/{complaint['id']}")
    assert read.status_code == 200
    assert read.json()["version"] == 2
    assert read.json()["refusal"]["reason"] == "out_of_scope"
    assert read.headers["ETag"] == '"2"'

    history = (await api.get(f"/complaints/{complaint['id']}/history", role="regulator")).json()
    events = history["events"]
    assert [e["type"] for e in events] == ["Accepted", "Refused"]
    assert [e["actor"] for e in events] == [
        {"id": "agent-1", "role": "agent"},
        {"id": "sup-9", "role": "supervisor"},
    ]
    assert events[0]["channel"] == "hotline" and events[0]["service"] == "intake"
    assert events[0]["prev_hash"] == GENESIS
    assert events[1]["prev_hash"] == events[0]["hash"]

    # Half an hour after acceptance the complaint was still 'accepted' at version 1.
    as_of = (clock() - timedelta(minutes=30)).isoformat()
    past = await api.get(f"/complaints/{complaint['id']}", as_of=as_of)
    assert past.status_code == 200, past.text
    assert past.json()["status"] == "accepted"
    assert past.json()["version"] == 1
    before = await api.get(
        f"/complaints/{complaint['id']}", as_of=(clock() - timedelta(days=1)).isoformat()
    )
    assert before.status_code == 404


async def test_history_hashes_cover_the_stored_events(api: Api, store: ComplaintStore) -> None:
    created = (await api.accept(intake_body())).json()
    history = (await api.get(f"/complaints/{created['id']}/history", role="agent")).json()
    stored = await store.history(UUID(created["id"]))
    records = [
        {
            "complaint_id": created["id"],
            "version": e.version,
            "type": e.type,
            "at": e.at.isoformat(),
            "ctx": e.ctx,
            # Personal fields by their salted digests: the links survive erasure.
            "data": committed_data(as_record(e.data), e.salt),
        }
        for e in stored
    ]
    assert stored[0].salt is not None
    assert records[0]["data"]["intake"]["customer"]["name"] == {
        "sha256": digest(stored[0].salt, stored[0].data["intake"]["customer"]["name"])
    }
    assert [h for _, h in chain(records)] == [e["hash"] for e in history["events"]]


async def test_repeat_complaint_is_linked_to_the_earlier_one(api: Api) -> None:
    first = (await api.accept(intake_body())).json()
    other_category = (await api.accept(intake_body(category="billing"))).json()
    second = (await api.accept(intake_body())).json()
    assert first["repeat_of"] is None
    assert other_category["repeat_of"] is None
    assert second["repeat_of"] == first["id"]
    assert second["acceptance_no"] != first["acceptance_no"]


@pytest.mark.parametrize(
    ("category", "occurred_at", "barred"),
    [
        ("billing", "2026-06-01T00:00:00+08:00", True),  # fee dispute after 5 months
        ("billing", "2026-07-01T00:00:00+08:00", False),
        ("network_coverage", "2024-11-01T00:00:00+08:00", True),  # other after 2 years
        ("network_coverage", "2025-06-01T00:00:00+08:00", False),
    ],
)
async def test_time_barred_disputes_are_flagged(
    api: Api, category: str, occurred_at: str, barred: bool
) -> None:
    response = await api.accept(intake_body(category=category, occurred_at=occurred_at))
    assert response.status_code == 201, response.text
    assert response.json()["time_barred"] is barred


async def test_letter_acceptance_limit_runs_from_receipt(api: Api) -> None:
    body = intake_body(
        channel="letter",
        received_at="2026-11-21T09:00:00+08:00",
        occurred_at="2026-11-18T09:00:00+08:00",
    )
    complaint = (await api.accept(body)).json()
    acceptance = next(d for d in complaint["deadlines"] if d["name"] == "acceptance")
    # Received Saturday 09:00, accepted Monday 10:00: more than 24 hours later.
    assert acceptance["due_at"] == "2026-11-22T01:00:00Z"
    assert acceptance["state"] == "missed"


async def test_masking_follows_the_role(api: Api) -> None:
    created = (await api.accept(intake_body())).json()
    path = f"/complaints/{created['id']}"
    for role in ("agent", "callback", "admin"):
        read = (await api.get(path, role=role)).json()
        assert read["customer"]["phone"] == "13812341234", role
        assert read["service_number"] == "13812341234", role
    for role in ("investigator", "supervisor", "analyst", "regulator"):
        read = (await api.get(path, role=role)).json()
        assert read["customer"]["phone"] == "138****1234", role
        assert read["customer"]["email"] == "z***@example.cn", role
        assert read["service_number"] == "138****1234", role
        history = (await api.get(f"{path}/history", role=role)).json()
        assert history["events"][0]["data"]["intake"]["customer"]["phone"] == "138****1234"


async def test_other_services_read_the_same_store(api: Api, settings, clock) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from services.callback.main import create_app

    created = (await api.accept(intake_body())).json()
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cb") as client:
            read = await client.get(f"/complaints/{created['id']}", headers=api.headers())
    assert read.status_code == 200
    assert read.json()["version"] == created["version"]
    assert read.json()["acceptance_no"] == created["acceptance_no"]


async def _refuse(api: Api, cid: str, body: dict[str, str], role: str = "agent") -> Any:
    return await api.client.post(
        f"/complaints/{cid}/refusal", json=body, headers=api.headers(role, f"{role}-3")
    )


TIME_BARRED = {"reason": "time_barred", "explanation": "逾期", "redirect": "消费者协会"}
REPEAT = {"reason": "repeat_with_conclusion", "explanation": "已答复", "redirect": "管局"}


async def test_time_barred_holds_only_if_intake_flagged_it_or_a_supervisor_overrides(
    api: Api,
) -> None:
    barred = (await api.accept(intake_body(occurred_at="2024-06-01T00:00:00+08:00"))).json()
    assert barred["time_barred"] is True
    assert (await _refuse(api, barred["id"], TIME_BARRED)).status_code == 200

    recent = await api.accept(intake_body(customer={**intake_body()["customer"], "id": "c2"}))
    cid = recent.json()["id"]
    refused = await _refuse(api, cid, TIME_BARRED)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "override_reason" in refused.json()["detail"]
    override = {**TIME_BARRED, "override_reason": "发生时间有误,经核实已逾两年"}
    by_agent = await _refuse(api, cid, override)
    assert by_agent.status_code == 403 and "supervisor" in by_agent.json()["detail"]
    assert (await api.get(f"/complaints/{cid}")).json()["version"] == 1  # nothing stored
    by_supervisor = await _refuse(api, cid, override, role="supervisor")
    assert by_supervisor.status_code == 200, by_supervisor.text
    refusal = by_supervisor.json()["refusal"]
    assert refusal["override_reason"] == "发生时间有误,经核实已逾两年"
    assert refusal["by"] == {"id": "supervisor-3", "role": "supervisor"}


async def test_repeat_with_conclusion_needs_an_earlier_answer(api: Api, inv: Api) -> None:
    first = (await api.accept(intake_body())).json()
    refused = await _refuse(api, first["id"], REPEAT)
    assert refused.status_code == 422 and "repeats none" in refused.json()["detail"]
    second = (await api.accept(intake_body())).json()
    assert second["repeat_of"] == first["id"]
    early = await _refuse(api, second["id"], REPEAT)
    assert early.status_code == 422  # the first one has no answer yet
    assert f"({first['acceptance_no']}) is accepted" in early.json()["detail"]
    for step in ("assignment", "findings", "resolution", "reply"):
        assert (await command(inv, first["id"], step, BODIES[step])).status_code == 200
    answered = await _refuse(api, second["id"], REPEAT)
    assert answered.status_code == 200, answered.text
    assert answered.json()["refusal"]["repeats"] == {"id": first["id"], "status": "replied"}


async def test_out_of_scope_needs_an_explanation(api: Api) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    blank = await _refuse(
        api, cid, {"reason": "out_of_scope", "explanation": "   ", "redirect": "请联系商家"}
    )
    assert blank.status_code == 422
    assert [e["field"] for e in blank.json()["errors"]] == ["explanation"]
