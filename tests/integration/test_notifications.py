"""Messages to customers leave through the gateway exactly once, whatever fails meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from devtools.gateway import create_app as create_gateway
from services.investigation.dispatcher import Dispatcher
from services.investigation.gateway import GatewayClient
from shared.audit.chain import ChainProjection
from shared.domain.clock import FixedClock
from shared.readmodel.summaries import SummaryProjection
from shared.store.facade import ComplaintStore
from tests.conftest import intake_body
from tests.integration.conftest import Api, catch_up
from tests.integration.test_investigation import BODIES, command


@pytest.fixture
async def gateway() -> AsyncIterator[Any]:
    app = create_gateway()
    yield app


def dispatcher(store: ComplaintStore, gateway_app: Any, clock: FixedClock) -> Dispatcher:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway_app), base_url="http://gateway"
    )
    return Dispatcher(
        store,
        GatewayClient("http://gateway/messages", client),
        clock=clock,
        backoff_seconds=2,
        backoff_max_seconds=60,
    )


async def _project(store: ComplaintStore) -> None:
    await catch_up(store, SummaryProjection(store), ChainProjection())


async def _replied(api: Api, inv: Api, *, extend: bool = False) -> str:
    cid = (await api.accept(intake_body())).json()["id"]
    complexity = "complex" if extend else "simple"
    await command(inv, cid, "assignment", {**BODIES["assignment"], "complexity": complexity})
    if extend:
        assert (await command(inv, cid, "extension", BODIES["extension"])).status_code == 200
    for step in ("findings", "resolution", "reply"):
        assert (await command(inv, cid, step, BODIES[step])).status_code == 200, step
    return str(cid)


async def test_reply_and_progress_notice_arrive_once(
    api: Api,
    inv: Api,
    store: ComplaintStore,
    gateway: Any,
    clock: FixedClock,
) -> None:
    cid = await _replied(api, inv, extend=True)
    await _project(store)
    sender = dispatcher(store, gateway, clock)
    assert await sender.dispatch_once() == 3
    await _project(store)
    assert await sender.dispatch_once() == 0  # nothing left: nothing sent twice
    received = gateway.state.received
    texts = {v["message"]["text"][:6]: v["message"]["text"] for v in received.values()}
    assert set(texts) == {"【投诉受理 ", "【投诉进展 ", "【投诉答复 "}
    complaint = (await inv.get(f"/complaints/{cid}")).json()
    number = complaint["acceptance_no"]
    assert f"受理编号 {number}" in texts["【投诉受理 "]  # the acknowledgement
    assert "预计 12 月 8 日前答复" in texts["【投诉进展 "]
    assert "故障已修复" in texts["【投诉答复 "]
    assert {v["message"]["to"] for v in received.values()} == {"13812341234"}
    # Each message carries the correlation id of the request that asked for it.
    events = (await inv.get(f"/complaints/{cid}/history")).json()["events"]
    asking = ("Accepted", "Extended", "Replied")
    asked = {e["correlation_id"] for e in events if e["type"] in asking}
    assert {v["request_id"] for v in received.values()} == asked and None not in asked
    assert [n["status"] for n in complaint["notifications"]] == ["sent", "sent", "sent"]
    types = [e["type"] for e in (await inv.get(f"/complaints/{cid}/history")).json()["events"]]
    assert types.count("NotificationSent") == 3


async def test_gateway_down_for_a_while_then_up(
    api: Api,
    inv: Api,
    store: ComplaintStore,
    gateway: Any,
    clock: FixedClock,
) -> None:
    cid = await _replied(api, inv)
    await _project(store)
    sender = dispatcher(store, gateway, clock)
    gateway.state.down = True
    for _ in range(3):
        assert await sender.dispatch_once() == 0
        await _project(store)
        assert await sender.dispatch_once() == 0  # backing off: not due yet
        clock.advance(timedelta(seconds=61))
    gateway.state.down = False
    assert await sender.dispatch_once() == 2  # the acknowledgement and the reply
    await _project(store)
    clock.advance(timedelta(minutes=10))
    assert await sender.dispatch_once() == 0
    assert len(gateway.state.received) == 2
    events = (await inv.get(f"/complaints/{cid}/history")).json()["events"]
    for message in ("ack-1", "reply-1"):
        outcomes = [e for e in events if e["data"].get("notification_id") == message]
        assert [e["type"] for e in outcomes] == ["NotificationFailed"] * 3 + ["NotificationSent"]
        assert "503" in outcomes[-2]["data"]["error"]
        assert outcomes[-1]["actor"] == {"id": "notification-dispatcher", "role": "system"}


async def test_dispatcher_killed_mid_send_loses_nothing_and_sends_once(
    api: Api,
    inv: Api,
    store: ComplaintStore,
    gateway: Any,
    clock: FixedClock,
) -> None:
    """The gateway has the message, but the dispatcher dies before recording it."""
    cid = await _replied(api, inv)
    await _project(store)
    arrived = asyncio.Event()

    slow = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://g")

    class Stalling(GatewayClient):
        async def send(self, message: Any, *, key: str) -> str:
            ref = await super().send(message, key=key)
            arrived.set()
            await asyncio.sleep(3600)  # the answer never gets back: the process dies here
            return ref

    doomed = Dispatcher(
        store,
        Stalling("http://g/messages", slow),
        clock=clock,
        backoff_seconds=2,
        backoff_max_seconds=60,
    )
    task = asyncio.create_task(doomed.dispatch_once())
    await asyncio.wait_for(arrived.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    complaint = await store.get(UUID(cid))
    statuses = {n: m["status"] for n, m in complaint.notifications.items()}
    assert statuses == {"ack-1": "pending", "reply-1": "pending"}  # nothing recorded
    assert len(gateway.state.received) == 1  # the one that reached the gateway

    assert await dispatcher(store, gateway, clock).dispatch_once() == 2  # both sent again…
    assert len(gateway.state.received) == 2  # …but the gateway delivered each once
    complaint = await store.get(UUID(cid))
    assert {m["status"] for m in complaint.notifications.values()} == {"sent"}


async def test_a_refused_message_fails_for_good_and_holds_nothing_up(
    api: Api, inv: Api, store: ComplaintStore, gateway: Any, clock: FixedClock
) -> None:
    refused_id = await _replied(api, inv)
    await _project(store)
    sender = dispatcher(store, gateway, clock)
    gateway.state.reject = True
    assert await sender.dispatch_once() == 0
    gateway.state.reject = False
    other_id = await _replied(api, inv)
    await _project(store)
    clock.advance(timedelta(hours=1))
    assert await sender.dispatch_once() == 2  # only the other's: the refused are not retried
    refused = await store.get(UUID(refused_id))
    assert {m["status"] for m in refused.notifications.values()} == {"failed"}
    other = (await store.get(UUID(other_id))).acceptance_no
    assert [v["message"]["reference"] for v in gateway.state.received.values()] == [other] * 2


async def test_no_message_goes_to_an_erased_customer(
    api: Api, inv: Api, store: ComplaintStore, gateway: Any, clock: FixedClock
) -> None:
    cid = await _replied(api, inv)
    customer = intake_body()["customer"]["id"]
    erased = await api.client.post(f"/customers/{customer}/erasure", headers=api.headers("admin"))
    assert erased.status_code == 200
    await _project(store)
    assert await dispatcher(store, gateway, clock).dispatch_once() == 0
    assert gateway.state.received == {}
    for message in (await inv.get(f"/complaints/{cid}")).json()["notifications"]:
        assert message["status"] == "failed"
        assert "erased" in message["last_error"]


async def test_a_letter_is_a_staff_task_listed_until_confirmed(
    api: Api, inv: Api, store: ComplaintStore, gateway: Any, clock: FixedClock
) -> None:
    body = intake_body(channel="web", reply_channel="letter")
    cid = (await api.accept(body)).json()["id"]
    sms = (await api.accept(intake_body(customer={**body["customer"], "id": "c-sms"}))).json()
    await _project(store)
    assert await dispatcher(store, gateway, clock).dispatch_once() == 1  # the SMS one only
    assert [v["message"]["reference"] for v in gateway.state.received.values()] == [
        sms["acceptance_no"]
    ]
    listed = (await api.get("/complaints", task="true")).json()["items"]
    assert [(c["id"], c["tasks"]) for c in listed] == [(cid, 1)]
    ack = (await api.get(f"/complaints/{cid}")).json()["notifications"][0]
    assert (ack["kind"], ack["channel"], ack["task"], ack["status"]) == (
        "acknowledgement",
        "letter",
        True,
        "pending",
    )
    path = f"/complaints/{cid}/notifications/ack-1/confirmation"
    note = {"note": "挂号信 XA123456 已寄出"}
    assert (
        await inv.client.post(path, json=note, headers=inv.headers("analyst"))
    ).status_code == 403
    done = await inv.client.post(path, json=note, headers=inv.headers("agent", "agent-9"))
    assert done.status_code == 200, done.text
    ack = done.json()["notifications"][0]
    assert ack["status"] == "sent" and ack["confirmed_by"] == {"id": "agent-9", "role": "agent"}
    again = await inv.client.post(path, json=note, headers=inv.headers("agent", "agent-9"))
    assert again.status_code == 409
    sms_path = f"/complaints/{sms['id']}/notifications/ack-1/confirmation"
    wrong = await inv.client.post(sms_path, json=note, headers=inv.headers("agent"))
    assert wrong.status_code == 422  # the gateway sends that one, not staff
    await _project(store)
    assert (await api.get("/complaints", task="true")).json()["items"] == []
    events = (await inv.get(f"/complaints/{cid}/history")).json()["events"]
    assert events[-1]["type"] == "NotificationConfirmed"
    assert events[-1]["data"]["note"] == "挂号信 XA123456 已寄出"


async def test_a_refusal_tells_the_customer_why_and_where_else_to_turn(
    api: Api, store: ComplaintStore, gateway: Any, clock: FixedClock
) -> None:
    created = (await api.accept(intake_body(reply_channel="email"))).json()
    refusal = {
        "reason": "out_of_scope",
        "explanation": "第三方应用的问题。",
        "redirect": "请联系应用商",
    }
    refused = await api.client.post(
        f"/complaints/{created['id']}/refusal", json=refusal, headers=api.headers("agent")
    )
    assert refused.status_code == 200, refused.text
    await _project(store)
    assert await dispatcher(store, gateway, clock).dispatch_once() == 2
    sent = {v["message"]["text"][:8]: v["message"] for v in gateway.state.received.values()}
    refusal_message = sent["【投诉不予受理 "]
    assert refusal_message["channel"] == "email"
    assert refusal_message["to"] == "zhang.wei@example.cn"
    assert refusal_message["text"] == (
        f"【投诉不予受理 {created['acceptance_no']}】很抱歉,您的投诉不予受理:"
        "所反映问题不属于本公司责任范围。第三方应用的问题。 您可以:请联系应用商"
    )
