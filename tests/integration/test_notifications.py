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
    assert await sender.dispatch_once() == 2
    await _project(store)
    assert await sender.dispatch_once() == 0  # nothing left: nothing sent twice
    received = gateway.state.received
    texts = [v["message"]["text"] for v in received.values()]
    assert len(texts) == 2
    assert "预计 12 月 8 日前答复" in texts[0] and "故障已修复" in texts[1]
    assert {v["message"]["to"] for v in received.values()} == {"13812341234"}
    # Each message carries the correlation id of the request that asked for it.
    events = (await inv.get(f"/complaints/{cid}/history")).json()["events"]
    asked = {e["correlation_id"] for e in events if e["type"] in ("Extended", "Replied")}
    assert {v["request_id"] for v in received.values()} == asked and None not in asked
    complaint = (await inv.get(f"/complaints/{cid}")).json()
    assert [n["status"] for n in complaint["notifications"]] == ["sent", "sent"]
    types = [e["type"] for e in (await inv.get(f"/complaints/{cid}/history")).json()["events"]]
    assert types.count("NotificationSent") == 2


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
    assert await sender.dispatch_once() == 1
    await _project(store)
    clock.advance(timedelta(minutes=10))
    assert await sender.dispatch_once() == 0
    assert len(gateway.state.received) == 1
    events = (await inv.get(f"/complaints/{cid}/history")).json()["events"]
    outcomes = [e["type"] for e in events if e["type"].startswith("Notification")]
    assert outcomes == ["NotificationFailed"] * 3 + ["NotificationSent"]
    assert "503" in events[-2]["data"]["error"]
    assert events[-1]["actor"] == {"id": "notification-dispatcher", "role": "system"}


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
    assert complaint.notifications["reply-1"]["status"] == "pending"  # nothing recorded

    assert await dispatcher(store, gateway, clock).dispatch_once() == 1  # sent again…
    assert len(gateway.state.received) == 1  # …but the gateway delivered it once
    complaint = await store.get(UUID(cid))
    assert complaint.notifications["reply-1"]["status"] == "sent"


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
    assert await sender.dispatch_once() == 1  # only the other one: the refused is not retried
    refused = await store.get(UUID(refused_id))
    assert refused.notifications["reply-1"]["status"] == "failed"
    assert [v["message"]["reference"] for v in gateway.state.received.values()] == [
        (await store.get(UUID(other_id))).acceptance_no
    ]


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
    reply = (await inv.get(f"/complaints/{cid}")).json()["notifications"][0]
    assert reply["status"] == "failed"
    assert "erased" in reply["last_error"]
