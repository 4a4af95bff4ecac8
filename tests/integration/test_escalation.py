"""Escalation over HTTP, regulator appeals, and the deadline watch (major incidents: see
test_incidents.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from services.escalation.main import create_app
from services.escalation.recalculation import Recalculation
from services.escalation.watch import DeadlineWatch
from shared.domain.clock import FixedClock
from shared.domain.context import Actor, CommandContext
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import TokenFactory, intake_body
from tests.integration.conftest import Api, catch_up, serving
from tests.integration.test_investigation import BODIES, command
from tests.unit.test_calendar_honesty import OFFICIAL_2027


@pytest.fixture
async def esc(settings: Settings, clock: FixedClock, token: TokenFactory) -> AsyncIterator[Api]:
    app = create_app(settings.model_copy(update={"deadline_watch_enabled": False}), clock=clock)
    async with serving(app, token) as client:
        yield client


async def post(api: Api, path: str, body: dict[str, Any], role: str) -> httpx.Response:
    return await api.client.post(path, json=body, headers=api.headers(role, f"{role}-7"))


async def test_escalate_and_review(api: Api, inv: Api, esc: Api) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    for step in ("assignment", "findings", "resolution", "reply"):
        assert (await command(inv, cid, step, BODIES[step])).status_code == 200
    body = {"trigger": "customer_dissatisfied", "reason": "不满意", "to_level": "provincial"}
    assert (await post(esc, f"/complaints/{cid}/escalation", body, "analyst")).status_code == 403
    escalated = await post(esc, f"/complaints/{cid}/escalation", body, "callback")
    assert escalated.status_code == 200, escalated.text
    assert escalated.json()["status"] == "escalated"
    assert escalated.json()["level"] == "provincial"
    assert escalated.json()["owner"] == "provincial-supervisors"
    history = (await esc.get(f"/complaints/{cid}/history")).json()["events"]
    handover = history[-1]["data"]["handover"]
    assert handover["findings"]["conclusion"] and handover["reply"]["conclusion"]
    again = await post(esc, f"/complaints/{cid}/escalation", body, "supervisor")
    assert again.status_code == 409  # only upwards

    reviewed = await post(
        esc, f"/complaints/{cid}/review", {"outcome": "upheld", "notes": "维持"}, "supervisor"
    )
    assert reviewed.status_code == 200
    assert reviewed.json()["status"] == "replied"  # the reply stands
    appeal_trigger = {**body, "trigger": "regulator_appeal", "to_level": "headquarters"}
    by_hand = await post(esc, f"/complaints/{cid}/escalation", appeal_trigger, "supervisor")
    assert by_hand.status_code == 200, by_hand.text  # docs/api.md lists the trigger here too


async def test_appeal_on_an_existing_complaint(api: Api, esc: Api) -> None:
    created = (await api.accept(intake_body())).json()
    appeal = {
        "regulator_ref": "MIIT-SS-2026-004211",
        "due_at": "2026-12-01T18:00:00+08:00",
        "acceptance_no": created["acceptance_no"],
    }
    answered = await post(esc, "/appeals", appeal, "agent")
    assert answered.status_code == 201, answered.text
    body = answered.json()
    assert body["id"] == created["id"]
    assert body["level"] == "headquarters" and body["status"] == "escalated"
    assert body["escalations"][-1]["regulator_ref"] == "MIIT-SS-2026-004211"
    due = {d["name"]: d for d in body["deadlines"]}
    assert due["regulator_appeal"]["due_at"] == "2026-12-01T10:00:00Z"


async def test_appeal_about_a_complaint_we_never_had(esc: Api) -> None:
    appeal = {
        "regulator_ref": "MIIT-SS-2026-000001",
        "due_at": "2026-12-01T18:00:00+08:00",
        "complaint": intake_body(channel="hotline"),
    }
    answered = await post(esc, "/appeals", appeal, "supervisor")
    assert answered.status_code == 201, answered.text
    body = answered.json()
    assert body["channel"] == "regulator"
    assert body["level"] == "headquarters"
    history = (await esc.get(f"/complaints/{body['id']}/history")).json()["events"]
    assert [e["type"] for e in history] == ["Accepted", "Escalated"]


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"acceptance_no": "261123-000000-0"}, 404),
        ({}, 422),
        ({"acceptance_no": "261123-000000-0", "complaint": intake_body()}, 422),
        ({"acceptance_no": "not-a-number"}, 422),
    ],
)
async def test_bad_appeals(esc: Api, extra: dict[str, Any], status: int) -> None:
    appeal = {"regulator_ref": "MIIT-1", "due_at": "2026-12-01T18:00:00+08:00", **extra}
    assert (await post(esc, "/appeals", appeal, "agent")).status_code == status
    assert (await post(esc, "/appeals", appeal, "regulator")).status_code == 403


async def _project(store: ComplaintStore) -> None:
    await catch_up(store, SummaryProjection(store), batch_size=2000)


async def _many(store: ComplaintStore, clock: FixedClock, n: int) -> list[UUID]:
    ctx = CommandContext(Actor("agent-1", "agent"), "intake", clock(), "hotline")
    ids = []
    for i in range(n):
        body = intake_body(customer={"id": f"c{i}", "name": "n", "phone": "13800000000"})
        body.update(received_at=None, area=None, evidence=[])
        ids.append((await store.accept(body, replace(ctx, request_id=f"r{i}"))).complaint.id)
    return ids


async def _watch_until_done(watchers: list[DeadlineWatch], store: ComplaintStore) -> None:
    while True:
        tried = await asyncio.gather(*(w.watch_once() for w in watchers))
        await _project(store)
        if not any(tried):
            return


@pytest.mark.parametrize("kill_one", [False, True])
async def test_thousands_of_deadlines_pass_at_once_and_escalate_exactly_once(
    settings: Settings, clock: FixedClock, kill_one: bool
) -> None:
    stores = [ComplaintStore(settings, clock=clock) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        ids = await _many(stores[0], clock, 500)
        await _project(stores[0])
        clock.advance(timedelta(days=4))  # the reply and investigation limits have passed
        watchers = [DeadlineWatch(s, clock=clock, batch=300) for s in stores]
        if kill_one:
            doomed = asyncio.create_task(watchers[0].watch_once())
            await asyncio.sleep(0.3)
            doomed.cancel()  # killed mid-run
            await asyncio.gather(doomed, return_exceptions=True)
            watchers = watchers[1:]
        await _watch_until_done(watchers, stores[0])

        missed = Counter()
        for complaint_id in ids:
            complaint = await stores[0].get(complaint_id)
            for name in ("reply", "investigation"):
                assert complaint.deadlines[name]["escalated_at"], (complaint_id, name)
            history = await stores[0].history(complaint_id)
            escalations = [e for e in history if e.type in ("Escalated", "SupervisorsAlerted")]
            missed[len(escalations)] += 1
            assert complaint.level == "provincial"
        # Two limits had passed: one lapse, one escalation each, never two.
        assert missed == {1: len(ids)}
    finally:
        for s in stores:
            await s.close()


async def test_the_level_names_a_handler_who_then_owns_it(api: Api, inv: Api, esc: Api) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    assert (await command(inv, cid, "assignment", BODIES["assignment"])).status_code == 200
    body = {"trigger": "customer_dissatisfied", "reason": "不满意", "to_level": "provincial"}
    escalated = (await post(esc, f"/complaints/{cid}/escalation", body, "agent")).json()
    assert escalated["owner"] == "provincial-supervisors" and escalated["owner_is_group"]
    due = {d["key"]: d for d in escalated["deadlines"]}
    assert due["escalation_assignment"]["state"] == "running"
    assert due["escalation_assignment"]["level"] == "provincial"
    # The former investigator no longer owns it; the group holds it until someone is named.
    evidence = BODIES["evidence"]
    late = await esc.client.post(
        f"/complaints/{cid}/evidence", json=evidence, headers=esc.headers("investigator", "inv-42")
    )
    assert late.status_code == 404  # evidence is investigation's route, not escalation's
    late = await inv.client.post(
        f"/complaints/{cid}/evidence", json=evidence, headers=inv.headers("investigator", "inv-42")
    )
    assert late.status_code == 403 and late.json()["owner"] == "provincial-supervisors"
    named = await post(esc, f"/complaints/{cid}/handler", {"handler": "prov-inv-5"}, "supervisor")
    assert named.status_code == 200, named.text
    assert named.json()["owner"] == "prov-inv-5" and not named.json()["owner_is_group"]
    assert named.json()["handlers"][0]["level"] == "provincial"
    due = {d["key"]: d for d in named.json()["deadlines"]}
    assert due["escalation_assignment"]["state"] == "met"
    assert (
        await post(esc, f"/complaints/{cid}/handler", {"handler": "x"}, "agent")
    ).status_code == 403
    added = await inv.client.post(
        f"/complaints/{cid}/evidence",
        json=evidence,
        headers=inv.headers("investigator", "prov-inv-5"),
    )
    assert added.status_code == 200, added.text


async def test_an_appeal_is_answered_by_a_reply_from_headquarters(
    api: Api, inv: Api, esc: Api
) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    for step in ("assignment", "findings", "resolution", "reply"):
        assert (await command(inv, cid, step, BODIES[step])).status_code == 200
    acceptance_no = (await api.get(f"/complaints/{cid}")).json()["acceptance_no"]
    appeal = {
        "regulator_ref": "MIIT-SS-2026-7",
        "due_at": "2026-12-01T18:00:00+08:00",
        "acceptance_no": acceptance_no,
    }
    assert (await post(esc, "/appeals", appeal, "agent")).status_code == 201
    reviewed = await post(
        esc, f"/complaints/{cid}/review", {"outcome": "upheld", "notes": "维持"}, "supervisor"
    )
    assert reviewed.status_code == 200
    state = reviewed.json()
    # The review is internal: the regulator still waits, and the complaint is back in handling
    # with its findings and plan, so that headquarters can answer.
    assert state["status"] == "resolution_proposed" and state["owner"] == "supervisor-7"
    due = {d["key"]: d for d in state["deadlines"]}
    assert due["regulator_appeal"]["state"] == "running"
    assert due["reply_after_review"]["state"] == "running"
    answered = await inv.client.post(
        f"/complaints/{cid}/reply", json=BODIES["reply"], headers=inv.headers("supervisor", "hq-1")
    )
    assert answered.status_code == 200, answered.text
    due = {d["key"]: d for d in answered.json()["deadlines"]}
    assert due["regulator_appeal"]["state"] == "met"
    assert due["callback.2"]["state"] == "running"  # the second reply is called back too


async def test_an_appeal_or_a_resolution_due_in_the_past_is_422(
    api: Api, inv: Api, esc: Api, clock: FixedClock
) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    acceptance_no = (await api.get(f"/complaints/{cid}")).json()["acceptance_no"]
    past = (clock() - timedelta(hours=1)).isoformat()
    appeal = {"regulator_ref": "MIIT-1", "due_at": past, "acceptance_no": acceptance_no}
    refused = await post(esc, "/appeals", appeal, "agent")
    assert refused.status_code == 422 and "due_at" in refused.json()["detail"]
    for step in ("assignment", "findings"):
        assert (await command(inv, cid, step, BODIES[step])).status_code == 200
    late = await command(inv, cid, "resolution", {**BODIES["resolution"], "due_at": past})
    assert late.status_code == 422 and "due_at" in late.json()["detail"]
    assert (await api.get(f"/complaints/{cid}")).json()["version"] == 3  # nothing stored


async def test_the_official_holiday_schedule_is_applied_to_running_limits(
    settings: Settings, clock: FixedClock
) -> None:
    clock.now = datetime(2026, 12, 31, 2, 0, tzinfo=UTC)  # Thu 31 Dec 2026, 10:00 Beijing
    before = ComplaintStore(settings, clock=clock)
    await before.open()
    try:
        ctx = CommandContext(Actor("agent-1", "agent"), "intake", clock(), "hotline")
        body = intake_body(business_type="fixed_line", category="billing")
        body.update(received_at=None, area=None, evidence=[])
        complaint_id = (await before.accept(body, ctx)).complaint.id
        await _project(before)
    finally:
        await before.close()
    # The services restart under a policy version that brings 2027's schedule.
    after = ComplaintStore(settings, clock=clock, policy=OFFICIAL_2027)
    await after.open()
    try:
        job = Recalculation(after, clock=clock, interval_seconds=600)
        clock.advance(timedelta(minutes=5))
        assert await job.recalculate_once() == 1
        complaint = await after.get(complaint_id)
        reply = complaint.deadlines["reply"]
        assert (reply["due_at"], reply["calendar"], reply["recalculated_from"]) == (
            "2027-01-07T15:59:59+00:00",
            "official",
            "2027-01-06T15:59:59+00:00",
        )
        history = await after.history(complaint_id)
        recalculated = [e for e in history if e.type == "DeadlinesRecalculated"]
        assert len(recalculated) == 1
        assert recalculated[0].ctx["actor"] == {"id": "calendar-recalculation", "role": "system"}
        await _project(after)
        assert await job.recalculate_once() == 0  # nothing left: nothing recorded twice
    finally:
        await after.close()
