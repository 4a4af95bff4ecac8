"""Webhooks: an admin subscribes a URL to event types; each matching event stored afterwards
reaches it signed per the Standard Webhooks spec, masked as the regulator reads it unless the
subscription may see personal data, retried with backoff, every attempt recorded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from standardwebhooks import Webhook, WebhookVerificationError

from devtools.gateway import create_app as create_gateway
from services.intake.main import create_app
from services.intake.webhooks import Resolve, WebhookSender
from shared.audit.chain import ChainProjection
from shared.audit.tables import audit_chain
from shared.cli.kek import command as kek_command
from shared.domain.clock import FixedClock
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from shared.store.keystore import KekFile
from shared.store.lease import holder_name
from shared.store.tables import idempotency_keys
from shared.webhooks.projection import WebhookProjection
from shared.webhooks.subscriptions import hold_position
from shared.webhooks.tables import webhook_deliveries
from tests.conftest import TokenFactory, intake_body, make_settings
from tests.integration.conftest import Api, catch_up, database_blobs, serving

RECEIVER = "http://receiver.test/webhooks"
NOT_ADMIN = ("agent", "investigator", "supervisor", "callback", "analyst", "regulator")


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The sender is driven by each test (`sender`), never by the app in the background."""
    return make_settings(database_url, webhooks_enabled=False)


@pytest.fixture
def clock() -> FixedClock:
    """Near the wall clock: a receiver checks `webhook-timestamp` against its own (5 minutes)."""
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def local_settings(settings: Settings) -> Settings:
    """Receivers on this machine allowed (the test's receiver is one)."""
    return settings.model_copy(update={"webhook_local_urls": True})


@pytest.fixture
async def hooks(
    local_settings: Settings, clock: FixedClock, token: TokenFactory
) -> AsyncIterator[Api]:
    async with serving(create_app(local_settings, clock=clock), token) as client:
        yield client


@pytest.fixture
def receiver() -> FastAPI:
    return create_gateway()


def sender(
    store: ComplaintStore,
    receiver: FastAPI,
    clock: FixedClock,
    *,
    local_allowed: bool = True,
    max_attempts: int = 5,
    resolve: Resolve | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> WebhookSender:
    client = httpx.AsyncClient(transport=transport or httpx.ASGITransport(app=receiver))
    extra: dict[str, Any] = {"resolve": resolve} if resolve else {}
    return WebhookSender(
        store,
        client,
        clock=clock,
        backoff_seconds=2,
        backoff_max_seconds=60,
        max_attempts=max_attempts,
        local_allowed=local_allowed,
        **extra,
    )


class Recording(httpx.AsyncBaseTransport):
    """A transport that keeps the requests it passes on."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)


async def project(store: ComplaintStore, clock: FixedClock) -> None:
    await catch_up(store, SummaryProjection(store), ChainProjection(), WebhookProjection(clock))


async def subscribe(api: Api, **body: Any) -> dict[str, Any]:
    answer = await api.client.post(
        "/subscriptions",
        json={"url": RECEIVER, "event_types": ["Complaint.Accepted"], **body},
        headers=api.headers("admin"),
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def deliveries(api: Api, subscription_id: str) -> list[dict[str, Any]]:
    answer = await api.get(f"/subscriptions/{subscription_id}/deliveries", role="admin")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


def verified(received: dict[str, Any], secret: str) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(received["body"], received["headers"])
    return payload


async def test_only_an_admin_keeps_subscriptions(hooks: Api) -> None:
    created = await subscribe(hooks, event_types=["Complaint.Accepted", "Complaint.Replied"])
    sid = created["id"]
    assert created["secret"].startswith("whsec_")
    assert created["created_by"] == "admin-1" and created["sees_personal_data"] is False
    for role in NOT_ADMIN:
        headers = hooks.headers(role)
        answers = [
            await hooks.client.post(
                "/subscriptions",
                json={"url": RECEIVER, "event_types": ["Complaint.Accepted"]},
                headers=headers,
            ),
            await hooks.client.get("/subscriptions", headers=headers),
            await hooks.client.get(f"/subscriptions/{sid}/deliveries", headers=headers),
            await hooks.client.delete(f"/subscriptions/{sid}", headers=headers),
        ]
        assert [a.status_code for a in answers] == [403] * 4, role
        assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
    listed = (await hooks.get("/subscriptions", role="admin")).json()
    assert [(s["id"], s["event_types"]) for s in listed] == [
        (sid, ["Complaint.Accepted", "Complaint.Replied"])
    ]
    assert "secret" not in listed[0]
    where = await hooks.get(f"/subscriptions/{sid}", role="admin")  # the creation's Location
    assert where.status_code == 200 and where.json() == listed[0]
    gone = await hooks.client.delete(f"/subscriptions/{sid}", headers=hooks.headers("admin"))
    assert gone.status_code == 204
    assert (await hooks.get(f"/subscriptions/{sid}", role="admin")).status_code == 410
    assert (await hooks.get("/subscriptions", role="admin")).json() == []
    again = await hooks.client.delete(f"/subscriptions/{sid}", headers=hooks.headers("admin"))
    assert again.status_code == 404
    assert again.headers["content-type"] == "application/problem+json"
    # A deleted subscription is gone from the API, its deliveries too (410, not "unknown").
    after = await hooks.get(f"/subscriptions/{sid}/deliveries", role="admin")
    assert after.status_code == 410 and after.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/in", "must be https"),
        ("https://127.0.0.1/in", "loopback, private"),
        ("https://10.1.2.3/in", "loopback, private"),
        ("https://169.254.169.254/latest/meta-data", "loopback, private"),
        ("https://[::1]/in", "loopback, private"),
        ("https://localhost:8025/webhooks", "this machine"),
        ("https://user:pw@hooks.example.com/in", "credentials"),
        ("ftp://hooks.example.com/in", "http(s) URL"),
        ("hooks.example.com/in", "http(s) URL"),
        ("https://hooks.example.com/\u00e9v\u000e", "RFC 3986"),  # found by fuzzing
    ],
)
async def test_a_receiver_on_this_machine_or_network_is_refused_in_production(
    settings: Settings, clock: FixedClock, token: TokenFactory, url: str, why: str
) -> None:
    # (production stated: `make` exports COMPLAINTS_ENVIRONMENT=development)
    production = settings.model_copy(update={"environment": "production"})
    async with serving(create_app(production, clock=clock), token) as api:
        await _refused(api, url, why)


async def _refused(api: Api, url: str, why: str) -> None:
    answer = await api.client.post(
        "/subscriptions",
        json={"url": url, "event_types": ["Complaint.Accepted"]},
        headers=api.headers("admin"),
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    [error] = answer.json()["errors"]
    assert error["field"] == "url" and why in error["message"]
    assert (await api.get("/subscriptions", role="admin")).json() == []


async def test_unknown_event_types_are_refused_naming_the_allowed_ones(api: Api) -> None:
    for types in (["Complaint.Accepted", "Complaint.Teleported"], [], ["Reserved"]):
        answer = await api.client.post(
            "/subscriptions",
            json={"url": "https://hooks.example.com/in", "event_types": types},
            headers=api.headers("admin"),
        )
        assert answer.status_code == 422, types
        [error] = answer.json()["errors"]
        assert error["field"] == "event_types", types
    teleported = await api.client.post(
        "/subscriptions",
        json={"url": "https://hooks.example.com/in", "event_types": ["Complaint.Teleported"]},
        headers=api.headers("admin"),
    )
    message = teleported.json()["errors"][0]["message"]
    assert "Complaint.Teleported" in message and "MajorIncident.Declared" in message
    assert (await api.get("/subscriptions", role="admin")).json() == []
    ok = await api.client.post(
        "/subscriptions",
        json={"url": "https://hooks.example.com/in", "event_types": ["MajorIncident.Declared"]},
        headers=api.headers("admin"),
    )
    assert ok.status_code == 201


async def test_an_accepted_complaint_reaches_the_receiver_signed_and_masked(
    hooks: Api, store: ComplaintStore, receiver: FastAPI, clock: FixedClock
) -> None:
    before = (await hooks.accept(intake_body())).json()  # stored before the subscription
    created = await subscribe(hooks)
    await hooks.accept(intake_body(customer={**intake_body()["customer"], "id": "cust-2"}))
    await project(store, clock)
    assert await sender(store, receiver, clock).send_once() == 1
    [received] = receiver.state.webhooks
    payload = verified(received, created["secret"])
    assert payload["type"] == "Complaint.Accepted"
    assert payload["data"]["aggregate_id"] != before["id"]
    for personal in ("13812341234", "张伟", "zhang.wei@example.cn", "家里没有4G信号"):
        assert personal not in received["body"]
    # The data is the line the regulator's export reads (the chain's masked line).
    async with store.engine.connect() as conn:
        line = await conn.scalar(
            select(audit_chain.c.masked_line).where(
                audit_chain.c.position == payload["data"]["position"]
            )
        )
    assert payload["data"] == json.loads(line)
    # Signed with this subscription's secret, and none other.
    other = (await subscribe(hooks))["secret"]
    with pytest.raises(WebhookVerificationError):
        verified(received, other)
    [delivery] = await deliveries(hooks, created["id"])
    assert delivery["webhook_id"] == received["headers"]["webhook-id"]
    assert delivery["status"] == "delivered" and delivery["event_type"] == "Complaint.Accepted"
    assert [(a["attempt"], a["status_code"]) for a in delivery["attempts"]] == [(1, 204)]
    # Nothing is sent twice.
    await project(store, clock)
    assert await sender(store, receiver, clock).send_once() == 0
    assert len(receiver.state.webhooks) == 1


async def test_a_subscription_that_may_see_personal_data_gets_it_in_plaintext(
    hooks: Api, store: ComplaintStore, receiver: FastAPI, clock: FixedClock
) -> None:
    created = await subscribe(hooks, sees_personal_data=True)
    await hooks.accept(intake_body())
    await project(store, clock)
    assert await sender(store, receiver, clock).send_once() == 1
    payload = verified(receiver.state.webhooks[0], created["secret"])
    customer = payload["data"]["data"]["intake"]["customer"]
    assert (customer["phone"], customer["name"]) == ("13812341234", "张伟")


async def test_a_failing_receiver_is_retried_with_backoff_until_it_takes_it(
    hooks: Api, store: ComplaintStore, receiver: FastAPI, clock: FixedClock
) -> None:
    created = await subscribe(hooks)
    await hooks.accept(intake_body())
    await project(store, clock)
    receiver.state.webhook_answers = [503, 500]
    send = sender(store, receiver, clock)
    start = clock()
    assert await send.send_once() == 0
    [delivery] = await deliveries(hooks, created["id"])
    assert delivery["status"] == "pending" and delivery["last_status_code"] == 503
    assert datetime.fromisoformat(delivery["next_attempt_at"]) == start + timedelta(seconds=2)
    assert await send.send_once() == 0  # not due yet: nothing attempted
    assert len(receiver.state.webhooks) == 1
    clock.advance(timedelta(seconds=2))
    assert await send.send_once() == 0  # second attempt: 500
    clock.advance(timedelta(seconds=3))
    assert await send.send_once() == 0  # the wait doubled to 4 s
    assert len(receiver.state.webhooks) == 2
    clock.advance(timedelta(seconds=1))
    assert await send.send_once() == 1
    [delivery] = await deliveries(hooks, created["id"])
    assert delivery["status"] == "delivered" and delivery["next_attempt_at"] is None
    assert [(a["attempt"], a["status_code"]) for a in delivery["attempts"]] == [
        (1, 503),
        (2, 500),
        (3, 204),
    ]
    assert [datetime.fromisoformat(a["at"]) - start for a in delivery["attempts"]] == [
        timedelta(0),
        timedelta(seconds=2),
        timedelta(seconds=6),
    ]
    # Every attempt carries the same webhook-id (the receiver drops resends) and verifies.
    ids = {r["headers"]["webhook-id"] for r in receiver.state.webhooks}
    assert ids == {delivery["webhook_id"]}
    for received in receiver.state.webhooks:
        verified(received, created["secret"])


async def test_a_delivery_is_given_up_after_its_last_attempt(
    hooks: Api, store: ComplaintStore, receiver: FastAPI, clock: FixedClock
) -> None:
    created = await subscribe(hooks)
    await hooks.accept(intake_body())
    await project(store, clock)
    receiver.state.webhook_answers = [500, 500, 500]
    send = sender(store, receiver, clock, max_attempts=2)
    await send.send_once()
    clock.advance(timedelta(minutes=5))
    await send.send_once()
    clock.advance(timedelta(hours=1))
    assert await send.send_once() == 0
    [delivery] = await deliveries(hooks, created["id"])
    assert delivery["status"] == "failed" and len(delivery["attempts"]) == 2
    assert delivery["last_error"] == "the receiver answered 500"
    assert len(receiver.state.webhooks) == 2


async def test_a_deleted_subscription_gets_nothing_more(
    hooks: Api, store: ComplaintStore, receiver: FastAPI, clock: FixedClock
) -> None:
    created = await subscribe(hooks)
    kept = await subscribe(hooks)
    await hooks.accept(intake_body())
    await project(store, clock)  # enqueued for both, not yet sent
    gone = await hooks.client.delete(
        f"/subscriptions/{created['id']}", headers=hooks.headers("admin")
    )
    assert gone.status_code == 204
    await hooks.accept(intake_body(customer={**intake_body()["customer"], "id": "cust-2"}))
    await project(store, clock)
    assert await sender(store, receiver, clock).send_once() == 2  # both to the one kept
    for received in receiver.state.webhooks:
        verified(received, kept["secret"])
    # What it was still owed is kept in the database as cancelled, never attempted; the API
    # serves nothing more of a deleted subscription.
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(webhook_deliveries.c.status, webhook_deliveries.c.attempts).where(
                    webhook_deliveries.c.subscription_id == created["id"]
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [("cancelled", 0)]
    after = await hooks.get(f"/subscriptions/{created['id']}/deliveries", role="admin")
    assert after.status_code == 410 and "deleted" in after.json()["detail"]


async def test_a_name_that_resolves_to_a_local_address_is_not_sent_to(
    api: Api, store: ComplaintStore, receiver: FastAPI, clock: FixedClock
) -> None:
    """In production a URL names a public host; every attempt checks where it resolves."""
    answer = await api.client.post(
        "/subscriptions",
        json={"url": "https://hooks.example.com/webhooks", "event_types": ["Complaint.Accepted"]},
        headers=api.headers("admin"),
    )
    assert answer.status_code == 201, answer.text
    sid = answer.json()["id"]
    await api.accept(intake_body())
    await project(store, clock)
    addresses = ["10.0.0.5"]

    async def resolve(host: str) -> list[str]:
        assert host == "hooks.example.com"
        return addresses

    send = sender(store, receiver, clock, local_allowed=False, resolve=resolve)
    assert await send.send_once() == 0
    assert receiver.state.webhooks == []
    [delivery] = await deliveries(api, sid)
    assert delivery["attempts"][0]["status_code"] is None
    assert "resolves to a local address" in delivery["attempts"][0]["error"]
    # A public address: sent to that very address (no second lookup a DNS answer could turn
    # to this machine), named as the receiver.
    addresses[:] = ["93.184.215.14"]
    clock.advance(timedelta(seconds=2))
    recording = Recording(httpx.ASGITransport(app=receiver))
    send = sender(store, receiver, clock, local_allowed=False, resolve=resolve, transport=recording)
    assert await send.send_once() == 1
    assert len(receiver.state.webhooks) == 1
    [sent] = recording.requests
    assert sent.url.host == "93.184.215.14" and sent.headers["host"] == "hooks.example.com"
    assert sent.extensions["sni_hostname"] == "hooks.example.com"


async def test_a_replayed_creation_creates_nothing_and_never_stores_the_secret(
    hooks: Api, store: ComplaintStore
) -> None:
    headers = hooks.headers("admin", **{"Idempotency-Key": "sub-1"})
    body = {"url": RECEIVER, "event_types": ["Complaint.Accepted"]}
    first = await hooks.client.post("/subscriptions", json=body, headers=headers)
    again = await hooks.client.post("/subscriptions", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == {**first.json(), "secret": None}
    assert len((await hooks.get("/subscriptions", role="admin")).json()) == 1
    secret = first.json()["secret"]
    async with store.engine.connect() as conn:
        stored = [bytes(b or b"") for b in await conn.scalars(select(idempotency_keys.c.body))]
    assert stored and all(secret.encode() not in b for b in stored)
    # Nor anywhere else in the database: the secret is kept sealed under the KEK only.
    key = secret.removeprefix("whsec_").encode()
    assert [t for t, blob in (await database_blobs(store.engine)).items() if key in blob] == []


async def test_a_kek_rotation_and_purge_keep_the_signing_secrets(
    local_settings: Settings,
    clock: FixedClock,
    token: TokenFactory,
    receiver: FastAPI,
    tmp_path: Path,
) -> None:
    """The secrets are sealed under the KEK; `kek rotate` re-seals them under the new one, so
    `kek purge` destroying the old one loses none."""
    kek_path = tmp_path / "keks" / "key-encryption-keys"
    KekFile.load(kek_path, create=True)
    settings = local_settings.model_copy(update={"kek_path": kek_path, "kek_retention_days": 0})
    async with serving(create_app(settings, clock=clock), token) as hooks:
        store: ComplaintStore = hooks.client._transport.app.state.store  # type: ignore[attr-defined]
        created = await subscribe(hooks)
        first = KekFile(kek_path).current.id
        assert (await kek_command(settings, "rotate", store)).endswith(
            "0 customer key(s) re-wrapped, 1 webhook secret(s) re-sealed"
        )
        clock.advance(timedelta(seconds=1))
        await store.report_keks(holder_name(hooks.client._transport.app))  # type: ignore[attr-defined]
        assert first in await kek_command(settings, "purge", store)
        assert [k.id for k in KekFile(kek_path).keks] != [first]
        await hooks.accept(intake_body())
        await project(store, clock)
        assert await sender(store, receiver, clock).send_once() == 1
        verified(receiver.state.webhooks[0], created["secret"])


async def test_two_senders_at_once_send_a_delivery_once(
    hooks: Api, store: ComplaintStore, receiver: FastAPI, clock: FixedClock
) -> None:
    """After a lease handover two senders may read the same due delivery: each claims it
    before sending, and only one claim holds."""
    created = await subscribe(hooks)
    await hooks.accept(intake_body())
    await project(store, clock)
    first, second = sender(store, receiver, clock), sender(store, receiver, clock)
    sent = await asyncio.gather(first.send_once(), second.send_once())
    assert sorted(sent) == [0, 1]
    assert len(receiver.state.webhooks) == 1
    [delivery] = await deliveries(hooks, created["id"])
    assert delivery["status"] == "delivered" and len(delivery["attempts"]) == 1


async def test_a_failing_receiver_holds_back_its_own_deliveries_not_the_others(
    hooks: Api, store: ComplaintStore, receiver: FastAPI, clock: FixedClock
) -> None:
    one, other = await subscribe(hooks), await subscribe(hooks)
    await hooks.accept(intake_body())
    await hooks.accept(intake_body(customer={**intake_body()["customer"], "id": "cust-2"}))
    await project(store, clock)
    receiver.state.webhook_answers = [500]  # the first POST fails, whoever's it is
    assert await sender(store, receiver, clock).send_once() == 2
    assert len(receiver.state.webhooks) == 3  # the failure, and the other's two
    mine = {s["id"]: await deliveries(hooks, s["id"]) for s in (one, other)}
    [failed_id] = [sid for sid, ds in mine.items() if any(d["attempts"] == [] for d in ds)]
    failed, waiting = sorted(mine[failed_id], key=lambda d: len(d["attempts"]), reverse=True)
    assert len(failed["attempts"]) == 1 and failed["status"] == "pending"
    assert waiting["attempts"] == [] and waiting["next_attempt_at"] == failed["next_attempt_at"]
    [healthy_id] = set(mine) - {failed_id}
    assert all(d["status"] == "delivered" for d in mine[healthy_id])


async def test_a_subscription_made_while_a_batch_is_enqueued_misses_none_of_its_events(
    local_settings: Settings,
    store: ComplaintStore,
    clock: FixedClock,
    token: TokenFactory,
    backend: str,
) -> None:
    """A batch of the deliveries' projection holds its position while it reads the
    subscriptions: a subscription made meanwhile waits, and takes the head after the batch, so
    whatever the batch read that it ought to get is its or a later batch's."""
    if backend != "postgres":
        pytest.skip("SQLite has one writer at a time: nothing to interleave")
    # No projector in the app: the only session to wait on a lock is the subscription's.
    quiet = local_settings.model_copy(update={"projector_enabled": False})
    async with serving(create_app(quiet, clock=clock), token) as hooks:
        await _made_during_a_batch(hooks, store, clock)


async def _made_during_a_batch(hooks: Api, store: ComplaintStore, clock: FixedClock) -> None:
    await subscribe(hooks)  # the projection has a position to hold
    await hooks.accept(intake_body())
    await project(store, clock)
    async with store.engine.begin() as batch:
        await hold_position(batch)  # as a batch's write does first
        await hooks.accept(intake_body(customer={**intake_body()["customer"], "id": "c-9"}))
        making = asyncio.ensure_future(subscribe(hooks))
        assert await _waits_on_a_lock(store), "the creation did not wait for the batch"
        assert not making.done()
    made = await making
    await project(store, clock)
    assert await deliveries(hooks, made["id"]) == []  # nothing from before it: after the head
    await hooks.accept(intake_body(customer={**intake_body()["customer"], "id": "c-10"}))
    await project(store, clock)
    assert [d["event_type"] for d in await deliveries(hooks, made["id"])] == ["Complaint.Accepted"]


async def _waits_on_a_lock(store: ComplaintStore, seconds: float = 10.0) -> bool:
    """Whether a session of this database comes to wait on a lock (within `seconds`)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        async with store.engine.connect() as conn:
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            )
        if waiting:
            return True
        await asyncio.sleep(0.01)
    return False
