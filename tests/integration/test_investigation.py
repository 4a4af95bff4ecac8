"""The investigation service over HTTP: accepted → replied, illegal orders, exact money."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.domain.clock import FixedClock
from tests.conftest import intake_body
from tests.integration.conftest import Api

ASSIGN = {"department": "network-ops", "investigator": "inv-42", "complexity": "simple"}
EVIDENCE = {"kind": "system_log", "ref": "ALARM-4417", "summary": "基站告警 37 次"}
FINDINGS = {
    "conclusion": "基站传输故障",
    "basis": "《网络服务质量规范》第 7 条",
    "root_cause": "transmission_fault",
    "upheld": True,
}
RESOLUTION = {
    "measures": ["更换传输板"],
    "owner": "eng-7",
    "due_at": "2026-11-25T18:00:00+08:00",
    "remedies": [{"type": "fee_waiver", "amount": "30.00"}, {"type": "apology"}],
}
REPLY = {
    "channel": "sms",
    "conclusion": "故障已修复",
    "basis": "第 7 条",
    "plan": "减免 30 元",
    "execution": "已完成",
}
EXTENSION = {
    "reason": "需厂家检测",
    "new_due_at": "2026-12-08T18:00:00+08:00",
    "progress_notice": "您的投诉正在处理中,预计 12 月 8 日前答复。",
}

ROLE = {"assignment": "supervisor"}


async def command(
    api: Api, complaint_id: str, name: str, body: dict[str, Any], role: str | None = None
) -> httpx.Response:
    return await api.client.post(
        f"/complaints/{complaint_id}/{name}",
        json=body,
        headers=api.headers(role or ROLE.get(name, "investigator"), "inv-42"),
    )


async def test_accepted_to_replied(api: Api, inv: Api, clock: FixedClock) -> None:
    complaint = (await api.accept(intake_body())).json()
    cid = complaint["id"]
    assert complaint["owner"] == "agent-1"

    steps = [
        ("assignment", ASSIGN, "investigating"),
        ("evidence", EVIDENCE, "investigating"),
        ("evidence", {**EVIDENCE, "ref": "CDR-1", "kind": "call_record"}, "investigating"),
        ("findings", FINDINGS, "investigating"),
        ("resolution", RESOLUTION, "resolution_proposed"),
        ("reply", REPLY, "replied"),
    ]
    version = 1
    for name, body, status in steps:
        clock.advance(timedelta(hours=2))
        response = await command(inv, cid, name, body)
        assert response.status_code == 200, (name, response.text)
        version += 1
        assert response.json()["status"] == status, name
        assert response.json()["version"] == version
        assert response.headers["ETag"] == f'"{version}"'

    final = (await inv.get(f"/complaints/{cid}")).json()
    assert final["owner"] == "inv-42"  # the one current owner since assignment
    assert final["assignment"]["department"] == "network-ops"
    assert [e["ref"] for e in final["evidence"]] == ["ALARM-4417", "CDR-1"]
    assert final["reply"]["conclusion"] == "故障已修复"
    states = {d["name"]: d["state"] for d in final["deadlines"]}
    assert states["investigation"] == "met" and states["reply"] == "met"
    assert [(n["id"], n["status"]) for n in final["notifications"]] == [
        ("ack-1", "pending"),
        ("reply-1", "pending"),
    ]
    history = (await inv.get(f"/complaints/{cid}/history")).json()["events"]
    assert [e["type"] for e in history] == [
        "Accepted",
        "Assigned",
        "EvidenceAdded",
        "EvidenceAdded",
        "FindingsRecorded",
        "ResolutionProposed",
        "Replied",
    ]
    assert history[1]["actor"] == {"id": "inv-42", "role": "supervisor"}
    assert history[2]["service"] == "investigation"


async def test_complexity_picks_the_investigation_limit(api: Api, inv: Api) -> None:
    simple = (await api.accept(intake_body())).json()
    complex_ = (await api.accept(intake_body(category="billing"))).json()
    a = (await command(inv, simple["id"], "assignment", ASSIGN)).json()
    b = await command(inv, complex_["id"], "assignment", {**ASSIGN, "complexity": "complex"})
    due = {d["name"]: d for d in a["deadlines"]}
    due_complex = {d["name"]: d for d in b.json()["deadlines"]}
    assert due["investigation"]["unit"] == "hours" and due["investigation"]["amount"] == 72
    assert due_complex["investigation"]["unit"] == "working_days"


async def test_extension_replaces_the_limit_and_keeps_both_in_history(api: Api, inv: Api) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    await command(inv, cid, "assignment", {**ASSIGN, "complexity": "complex"})
    extended = await command(inv, cid, "extension", EXTENSION)
    assert extended.status_code == 200, extended.text
    body = extended.json()
    due = {d["key"]: d for d in body["deadlines"]}
    # A complex mobile complaint: investigation and reply both 2 working days (Wed 25 Nov);
    # the extension moves both to the date the customer is told.
    for name in ("investigation", "reply"):
        assert due[name]["due_at"] == "2026-12-08T10:00:00Z", name
        assert due[name]["original_due_at"] == "2026-11-25T15:59:59Z", name
    assert due["operator_answer"]["original_due_at"] is None
    assert body["extensions"][0]["previous_due_at"] != body["extensions"][0]["new_due_at"]
    assert [n["kind"] for n in body["notifications"]] == ["acknowledgement", "progress_notice"]
    history = (await inv.get(f"/complaints/{cid}/history")).json()["events"]
    assert history[1]["data"]["deadlines"][0]["due_at"] == body["extensions"][0]["previous_due_at"]
    assert history[2]["type"] == "Extended"


# Each case: the commands that lead up to it, then one that is illegal at that point.
ILLEGAL = [
    ([], "evidence", EVIDENCE),
    ([], "findings", FINDINGS),
    ([], "resolution", RESOLUTION),
    ([], "reply", REPLY),
    ([], "extension", EXTENSION),
    (["assignment"], "resolution", RESOLUTION),  # findings first
    (["assignment"], "reply", REPLY),  # findings first
    (["assignment"], "extension", EXTENSION),  # simple complaints are not extended
    (["assignment", "findings"], "reply", REPLY),  # upheld: a resolution first
    (["assignment", "findings", "resolution"], "findings", FINDINGS),
    (["assignment", "findings", "resolution"], "assignment", ASSIGN),
    (["assignment", "findings", "resolution", "reply"], "reply", REPLY),
    (["assignment", "findings", "resolution", "reply"], "evidence", EVIDENCE),
    (["assignment", "findings", "resolution", "reply"], "assignment", ASSIGN),
]
BODIES = {
    "assignment": ASSIGN,
    "evidence": EVIDENCE,
    "findings": FINDINGS,
    "resolution": RESOLUTION,
    "reply": REPLY,
    "extension": EXTENSION,
}


@pytest.mark.parametrize(("before", "name", "body"), ILLEGAL)
async def test_illegal_orders_are_409_and_append_nothing(
    api: Api, inv: Api, before: list[str], name: str, body: dict[str, Any]
) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    for step in before:
        assert (await command(inv, cid, step, BODIES[step])).status_code == 200, step
    version = (await inv.get(f"/complaints/{cid}")).json()["version"]
    refused = await command(inv, cid, name, body)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert (
        refused.json()["current_status"] == (await inv.get(f"/complaints/{cid}")).json()["status"]
    )
    assert (await inv.get(f"/complaints/{cid}")).json()["version"] == version


async def test_roles(api: Api, inv: Api) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    assert (await command(inv, cid, "assignment", ASSIGN, role="investigator")).status_code == 403
    assert (await command(inv, cid, "assignment", ASSIGN, role="agent")).status_code == 403
    assert (await command(inv, cid, "assignment", ASSIGN, role="supervisor")).status_code == 200
    assert (await command(inv, cid, "evidence", EVIDENCE, role="regulator")).status_code == 403
    assert (await command(inv, cid, "evidence", EVIDENCE, role="callback")).status_code == 403
    assert (await command(inv, cid, "evidence", EVIDENCE, role="investigator")).status_code == 200


async def test_reply_goes_through_the_customers_channel(api: Api, inv: Api) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    for step in ("assignment", "findings", "resolution"):
        await command(inv, cid, step, BODIES[step])
    wrong = await command(inv, cid, "reply", {**REPLY, "channel": "letter"})
    assert wrong.status_code == 422


@pytest.mark.parametrize("amount", ["0.01", "30.00", "128.5", "99999999.99", "0"])
async def test_money_survives_the_round_trip_exactly(api: Api, inv: Api, amount: str) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    await command(inv, cid, "assignment", ASSIGN)
    await command(inv, cid, "findings", FINDINGS)
    body = {**RESOLUTION, "remedies": [{"type": "compensation", "amount": amount}]}
    proposed = await command(inv, cid, "resolution", body)
    assert proposed.status_code == 200, proposed.text
    assert proposed.json()["resolution"]["remedies"] == [{"type": "compensation", "amount": amount}]
    read = (await inv.get(f"/complaints/{cid}")).json()
    assert read["resolution"]["remedies"][0]["amount"] == amount
    history = (await inv.get(f"/complaints/{cid}/history")).json()["events"]
    assert history[-1]["data"]["remedies"][0]["amount"] == amount


@pytest.mark.parametrize("amount", [30.0, "30.001", "-1.00", "abc", "1e3", "NaN"])
async def test_bad_money_is_422(api: Api, inv: Api, amount: object) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    await command(inv, cid, "assignment", ASSIGN)
    await command(inv, cid, "findings", FINDINGS)
    body = {**RESOLUTION, "remedies": [{"type": "refund", "amount": amount}]}
    response = await command(inv, cid, "resolution", body)
    assert response.status_code == 422, response.text


async def test_a_pause_moves_the_pausable_limits_by_its_length(
    api: Api, inv: Api, clock: FixedClock
) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    assert (await command(inv, cid, "assignment", ASSIGN)).status_code == 200
    before = {
        d["name"]: d["due_at"] for d in (await api.get(f"/complaints/{cid}")).json()["deadlines"]
    }
    paused = await command(inv, cid, "pause", {"reason": "等待客户回复"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["clock_paused"] is True
    again = await command(inv, cid, "pause", {"reason": "again"})
    assert again.status_code == 409
    clock.advance(timedelta(hours=5))
    resumed = await command(inv, cid, "resume", {})
    assert resumed.status_code == 200, resumed.text
    after = {d["name"]: d for d in resumed.json()["deadlines"]}
    assert after["investigation"]["pausable"] is True
    moved = datetime.fromisoformat(after["investigation"]["due_at"]) - datetime.fromisoformat(
        before["investigation"]
    )
    assert moved == timedelta(hours=5)
    assert after["operator_answer"]["due_at"] == before["operator_answer"]  # not pausable
    assert (await command(inv, cid, "resume", {})).status_code == 409


async def test_a_409_says_which_commands_the_status_allows(api: Api, inv: Api) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    refused = await command(inv, cid, "reply", REPLY)
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["current_status"] == "accepted"
    assert problem["allowed"] == [
        "POST /complaints/{id}/assignment (investigation)",
        "POST /complaints/{id}/escalation (escalation)",
        "POST /complaints/{id}/pause (investigation)",
        "POST /complaints/{id}/refusal (intake)",
        "POST /complaints/{id}/resume (investigation)",
    ]
    assert "Allowed now: POST /complaints/{id}/assignment (investigation)" in problem["detail"]


async def test_only_the_assigned_investigator_or_a_supervisor_acts(api: Api, inv: Api) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    assert (await command(inv, cid, "assignment", ASSIGN)).status_code == 200
    version = (await inv.get(f"/complaints/{cid}")).json()["version"]
    for name in ("evidence", "findings", "pause"):
        body = {"reason": "等待"} if name == "pause" else BODIES[name]
        other = await inv.client.post(
            f"/complaints/{cid}/{name}", json=body, headers=inv.headers("investigator", "inv-99")
        )
        assert other.status_code == 403, other.text
        assert other.headers["content-type"] == "application/problem+json"
        assert other.json()["owner"] == "inv-42"
        assert "inv-42" in other.json()["detail"]
    assert (await inv.get(f"/complaints/{cid}")).json()["version"] == version  # nothing stored
    assert (await command(inv, cid, "evidence", EVIDENCE)).status_code == 200  # inv-42 itself
    by_supervisor = await inv.client.post(
        f"/complaints/{cid}/evidence", json=EVIDENCE, headers=inv.headers("supervisor", "sup-3")
    )
    assert by_supervisor.status_code == 200
    answer = by_supervisor.json()
    assert answer["owner"] == "inv-42" and answer["first_contact_owner"] == "agent-1"


async def test_an_extension_beyond_the_maximum_is_422_and_stores_nothing(
    api: Api, inv: Api
) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    await command(inv, cid, "assignment", {**ASSIGN, "complexity": "complex"})
    # First due Wed 25 Nov; 10 working days on is Wed 9 Dec, 23:59:59 in Beijing.
    late = await command(
        inv, cid, "extension", {**EXTENSION, "new_due_at": "2026-12-10T09:00:00+08:00"}
    )
    assert late.status_code == 422, late.text
    assert late.headers["content-type"] == "application/problem+json"
    assert "2026-12-09T15:59:59+00:00" in late.json()["detail"]
    assert (await inv.get(f"/complaints/{cid}")).json()["version"] == 2
