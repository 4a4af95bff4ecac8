"""Personal data is sealed with the customer's key; erasure destroys the key, and the retention
setting does so by itself. Afterwards no plaintext of that customer is left anywhere in the
database, its exports or the logs, the complaints still replay, and the audit chain and its
checkpoints still verify."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from anyio import to_thread
from sqlalchemy import table

from services.escalation.main import create_app as create_escalation_app
from shared.audit.chain import ChainProjection
from shared.audit.verify import verify
from shared.domain.clock import FixedClock
from shared.domain.personal import ERASED_TEXT
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import TokenFactory, intake_body, make_settings, pinned_key
from tests.integration.conftest import Api, catch_up, database_blobs, serving
from tests.integration.test_callback import call
from tests.integration.test_investigation import BODIES, command

CUSTOMER = "cust-erase-1"
#: Every personal value this customer gives, in ASCII so it is found in any encoding.
SECRETS = {
    "name": "Erasable Name Q7",
    "phone": "13977770123",
    "email": "q7.erasable@example.cn",
    "description": "MARKER-DESCRIPTION-Q7 no signal at home",
    "demand": "MARKER-DEMAND-Q7",
    "intake_evidence": "MARKER-INTAKE-EVIDENCE-Q7",
    "evidence": "MARKER-EVIDENCE-Q7",
    "unreached": "MARKER-UNREACHED-Q7",
    "callback": "MARKER-CALLBACK-Q7",
    "archive": "MARKER-ARCHIVE-Q7",
}


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Snapshots every 3 events, so snapshots hold personal data too."""
    return make_settings(database_url, snapshot_interval=3)


def _body(customer_id: str = CUSTOMER, secrets: dict[str, str] = SECRETS) -> dict[str, Any]:
    return intake_body(
        customer={
            "id": customer_id,
            "name": secrets["name"],
            "phone": secrets["phone"],
            "email": secrets["email"],
        },
        service_number=secrets["phone"],
        description=secrets["description"],
        demand=secrets["demand"],
        evidence=[{"kind": "recording", "ref": "REC-1", "summary": secrets["intake_evidence"]}],
    )


async def _archived_complaint(api: Api, inv: Api, cb: Api) -> str:
    accepted = await api.accept(_body(), **{"Idempotency-Key": "erase-accept-1"})
    assert accepted.status_code == 201, accepted.text
    cid = str(accepted.json()["id"])
    steps = [
        ("assignment", BODIES["assignment"]),
        ("evidence", {**BODIES["evidence"], "summary": SECRETS["evidence"]}),
        ("findings", BODIES["findings"]),
        ("resolution", BODIES["resolution"]),
        ("reply", BODIES["reply"]),
    ]
    for step, body in steps:
        assert (await command(inv, cid, step, body)).status_code == 200, step
    for path, body in [
        ("callback", {"reached": False, "comments": SECRETS["unreached"]}),
        (
            "callback",
            {"satisfaction": "satisfied", "resolved": True, "comments": SECRETS["callback"]},
        ),
        ("archive", {"summary": SECRETS["archive"]}),
    ]:
        assert (await call(cb, cid, path, body)).status_code == 200, path
    return cid


def _found(blobs: dict[str, bytes], secrets: dict[str, str] = SECRETS) -> set[tuple[str, str]]:
    return {
        (table_name, field)
        for table_name, blob in blobs.items()
        for field, value in secrets.items()
        if value.encode() in blob
    }


async def _settled(api: Api) -> int:
    """The read models and the audit chain have caught up; a checkpoint signs the head."""
    head = (await api.client.get("/ready")).json()["position"]
    listed = await api.client.get(
        "/complaints", params={"min_position": str(head)}, headers=api.headers("supervisor")
    )
    assert listed.status_code == 200
    for _ in range(400):
        signed = await api.client.post("/audit/checkpoints", headers=api.headers("analyst"))
        if signed.status_code == 201 and signed.json()["position"] == head:
            return int(head)
        await asyncio.sleep(0.025)
    pytest.fail("the audit chain did not catch up")


async def _export(api: Api) -> list[bytes]:
    """The export as a role that reads plaintext sees it (a regulator's reads digests)."""
    export = await api.client.get("/audit/export", headers=api.headers("admin"))
    assert export.status_code == 200
    return export.content.splitlines(keepends=True)


async def test_erasure_leaves_no_plaintext_and_the_chain_verifies(
    api: Api,
    inv: Api,
    cb: Api,
    store: ComplaintStore,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cid = await _archived_complaint(api, inv, cb)
    other = {
        k: v.replace("Q7", "K9").replace("q7", "k9").replace("139777", "139555")
        for k, v in SECRETS.items()
    }
    other_id = (await api.accept(_body("cust-keep-2", other))).json()["id"]
    await _settled(api)

    # Sealed at rest: the event store and its snapshots hold no plaintext even now, nor does
    # the stored answer of the Idempotency-Key.
    blobs = await database_blobs(store.engine)
    assert any(blob for name, blob in blobs.items() if name.endswith("snapshots")), "no snapshot"
    assert _found(blobs) == set()
    assert {t for t, _ in _found(blobs, other)} == set()
    before = (await api.get(f"/complaints/{cid}")).json()
    assert before["customer"]["name"] == SECRETS["name"]
    assert before["callbacks"][0]["comments"] == SECRETS["callback"]
    assert before["archive_summary"] == SECRETS["archive"]
    history_before = (await api.get(f"/complaints/{cid}/history")).json()["events"]
    assert verify(
        await _export(api),
        (await api.get("/audit/checkpoints", "regulator")).json(),
        key=pinned_key(),
    ).valid

    # Only admin may erase.
    for role in ("agent", "supervisor", "regulator"):
        denied = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers(role))
        assert denied.status_code == 403
    erased = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers("admin"))
    assert erased.status_code == 200, erased.text
    assert erased.json()["keys_destroyed"] == 1
    assert erased.json()["complaints"] == [cid]

    # Reads: every personal field reads as erased, at any time; the facts stay.
    after = (await api.get(f"/complaints/{cid}")).json()
    for shown in (after, (await api.get(f"/complaints/{cid}", "supervisor")).json()):
        assert shown["customer"]["name"] == ERASED_TEXT
        assert shown["customer"]["phone"] == ERASED_TEXT
        assert shown["customer"]["email"] == ERASED_TEXT
        assert shown["service_number"] == ERASED_TEXT
        assert shown["description"] == shown["demand"] == ERASED_TEXT
        assert {e["summary"] for e in shown["evidence"]} == {ERASED_TEXT}
        assert shown["callbacks"][0]["comments"] == ERASED_TEXT
        assert shown["callback_attempts"][0]["comments"] == ERASED_TEXT
        assert shown["archive_summary"] == ERASED_TEXT
    assert after["personal_data_erased_at"] is not None
    assert after["version"] == before["version"] + 1
    for fact in ("status", "category", "acceptance_no", "deadlines", "findings", "reply"):
        assert after[fact] == before[fact], fact
    assert after["customer"]["id"] == CUSTOMER
    as_of = (await api.get(f"/complaints/{cid}", as_of=before["accepted_at"])).json()
    assert as_of["description"] == ERASED_TEXT

    # From its snapshot or from its events alone, the erased complaint is the same.
    def replayed() -> dict[str, Any]:
        complaint = None
        for event in store.app.events.get(UUID(cid)):
            complaint = event.mutate(complaint)
        return dict(vars(complaint))

    snapshot_based = await store.get(UUID(cid))
    assert await to_thread.run_sync(store.app.keys.run, replayed) == vars(snapshot_based)

    history = (await api.get(f"/complaints/{cid}/history")).json()["events"]
    assert history[-1]["type"] == "PersonalDataErased"
    assert history[-1]["actor"]["role"] == "admin"
    assert [e["hash"] for e in history[:-1]] == [e["hash"] for e in history_before]

    # Nowhere in the database, the exports or the logs; the chain and checkpoints verify.
    await _settled(api)
    assert _found(await database_blobs(store.engine)) == set()
    lines = await _export(api)
    assert not any(value.encode() in b"".join(lines) for value in SECRETS.values())
    verdict = verify(
        lines, (await api.get("/audit/checkpoints", "regulator")).json(), key=pinned_key()
    )
    assert verdict.valid, verdict.message
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert not any(value in logged for value in SECRETS.values())

    # A rebuild of the chain gives the same heads the checkpoints signed.
    async with store.engine.begin() as conn:
        await ChainProjection().reset(conn)
        await conn.execute(table("projection_tracking").delete())
    await catch_up(store, SummaryProjection(store), ChainProjection())
    rebuilt = verify(
        await _export(api),
        (await api.get("/audit/checkpoints", "regulator")).json(),
        key=pinned_key(),
    )
    assert rebuilt.valid, rebuilt.message

    # Another customer is untouched; the erased customer's next complaint is readable.
    assert (await api.get(f"/complaints/{other_id}")).json()["demand"] == other["demand"]
    again = await api.accept(_body())
    assert again.json()["customer"]["name"] == SECRETS["name"]
    # Its service number cannot be matched against the erased ones: no repeat link.
    assert again.json()["repeat_of"] is None
    fresh = (await api.get(f"/complaints/{again.json()['id']}")).json()
    assert fresh["customer"]["name"] == SECRETS["name"]
    assert (await api.get(f"/complaints/{cid}")).json()["description"] == ERASED_TEXT


async def test_a_handover_copies_what_it_read_sealed_and_shows_it(
    api: Api, inv: Api, cb: Api, settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    """A complaint read from the store holds its personal data sealed; an escalation of it
    copies the last callback's comments into its handover as read, unopened. The handover
    shows them like any other; after the erasure it reads erased, and the chain's links and
    its verification stay as they were."""
    cid = str((await api.accept(_body())).json()["id"])
    for step in ("assignment", "findings", "resolution", "reply"):
        assert (await command(inv, cid, step, BODIES[step])).status_code == 200, step
    dissatisfied = {
        "satisfaction": "dissatisfied",
        "resolved": False,
        "comments": SECRETS["callback"],
    }
    assert (await call(cb, cid, "callback", dissatisfied)).status_code == 200
    esc_app = create_escalation_app(
        settings.model_copy(update={"deadline_watch_enabled": False}), clock=clock
    )
    async with serving(esc_app, token) as esc:
        up = {"trigger": "customer_dissatisfied", "reason": "still", "to_level": "headquarters"}
        escalated = await esc.client.post(
            f"/complaints/{cid}/escalation", json=up, headers=esc.headers("supervisor", "sup-9")
        )
    assert escalated.status_code == 200, escalated.text
    assert escalated.json()["callbacks"][-1]["comments"] == SECRETS["callback"]

    def handed_over(history: list[dict[str, Any]]) -> list[str]:
        return [
            e["data"]["handover"]["last_callback"]["comments"]
            for e in history
            if e["type"] == "Escalated"
        ]

    history = (await api.get(f"/complaints/{cid}/history")).json()["events"]
    # The first escalation came with the callback itself; the second read it from the store.
    assert handed_over(history) == [SECRETS["callback"]] * 2
    await _settled(api)
    checkpoints = (await api.get("/audit/checkpoints", "regulator")).json()
    assert verify(await _export(api), checkpoints, key=pinned_key()).valid

    erased = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers("admin"))
    assert erased.status_code == 200
    after = (await api.get(f"/complaints/{cid}/history")).json()["events"]
    assert handed_over(after) == [ERASED_TEXT] * 2
    assert [e["hash"] for e in after[: len(history)]] == [e["hash"] for e in history]
    await _settled(api)
    checkpoints = (await api.get("/audit/checkpoints", "regulator")).json()
    verdict = verify(await _export(api), checkpoints, key=pinned_key())
    assert verdict.valid, verdict.message


async def test_a_repeated_erasure_changes_nothing_more(api: Api, store: ComplaintStore) -> None:
    cid = (await api.accept(_body())).json()["id"]
    first = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers("admin"))
    version = (await api.get(f"/complaints/{cid}")).json()["version"]
    second = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers("admin"))
    assert second.status_code == 200
    assert (first.json()["keys_destroyed"], second.json()["keys_destroyed"]) == (1, 0)
    assert second.json()["complaints"] == [cid]
    assert (await api.get(f"/complaints/{cid}")).json()["version"] == version
    bad = await api.client.post("/customers/bad id!/erasure", headers=api.headers("admin"))
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


async def test_erasing_a_customer_who_never_complained_is_404_and_changes_nothing(
    api: Api, store: ComplaintStore
) -> None:
    """A mistyped id is told so (404 problem+json naming it), not answered as erased: nothing
    is recorded, no key of anyone else is destroyed, and the customer who does exist is
    erased afterwards as usual."""
    cid = (await api.accept(_body())).json()["id"]
    await _settled(api)
    before = await database_blobs(store.engine)
    for heartbeat in ("projection_leases", "kek_holders"):  # renewed meanwhile
        before.pop(heartbeat)
    unknown = await api.client.post("/customers/nobody-9/erasure", headers=api.headers("admin"))
    assert unknown.status_code == 404, unknown.text
    assert unknown.headers["content-type"] == "application/problem+json"
    assert "nobody-9" in unknown.json()["detail"]
    after = await database_blobs(store.engine)
    for heartbeat in ("projection_leases", "kek_holders"):
        after.pop(heartbeat)
    assert after == before
    read = (await api.get(f"/complaints/{cid}", "agent")).json()
    assert read["customer"]["name"] == SECRETS["name"]
    erased = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers("admin"))
    assert (erased.status_code, erased.json()["keys_destroyed"]) == (200, 1)


async def test_what_an_erased_complaint_records_later_is_erased_at_once(
    api: Api, inv: Api, store: ComplaintStore
) -> None:
    """No new key brings an erased customer's data back: evidence added afterwards, and the
    snapshots taken afterwards, hold nothing readable."""
    cid = (await api.accept(_body())).json()["id"]
    first = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers("admin"))
    assert first.json()["keys_destroyed"] == 1
    assert (await command(inv, cid, "assignment", BODIES["assignment"])).status_code == 200
    for n in range(4):  # past the snapshot interval (3)
        added = await command(inv, cid, "evidence", {**BODIES["evidence"], "summary": f"EV-{n}"})
        assert added.status_code == 200
        assert added.json()["evidence"][-1]["summary"] == ERASED_TEXT  # the answer too
    shown = (await api.get(f"/complaints/{cid}")).json()
    assert {e["summary"] for e in shown["evidence"]} == {ERASED_TEXT}
    blobs = await database_blobs(store.engine)
    assert not any(f"EV-{n}".encode() in blob for n in range(4) for blob in blobs.values())
    assert CUSTOMER.encode() not in blobs["wrapped_keys"]
    second = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers("admin"))
    assert second.json()["keys_destroyed"] == 0
    assert (await api.get(f"/complaints/{cid}")).json()["version"] == shown["version"]


async def test_an_acceptance_overtaken_by_the_erasure_records_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The customer's key is destroyed between the moment the acceptance takes it (a customer
    with an earlier complaint) and the moment it is stored: the complaint records the
    erasure, and the answer is erased. (A first complaint's key is written with its events:
    an erasure before that finds no key, and the complaint is a new one after it.)"""
    assert (await api.accept(_body(), **{"Idempotency-Key": "earlier-1"})).status_code == 201
    app_store: ComplaintStore = api.client._transport.app.state.store  # type: ignore[attr-defined]
    keys = app_store.app.keys
    bind = keys.bind

    def erased_meanwhile(complaint_id: UUID, customer_id: str) -> Any:
        key = bind(complaint_id, customer_id)
        keys.store.destroy(customer_id)  # by another process: this one remembers nothing
        return key

    monkeypatch.setattr(keys, "bind", erased_meanwhile)
    accepted = await api.accept(_body(), **{"Idempotency-Key": "overtaken-1"})
    assert accepted.status_code == 201
    assert accepted.json()["customer"]["name"] == ERASED_TEXT
    assert accepted.json()["personal_data_erased_at"] is not None
    history = (await api.get(f"/complaints/{accepted.json()['id']}/history")).json()["events"]
    assert [e["type"] for e in history] == ["Accepted", "PersonalDataErased"]
    replay = await api.accept(_body(), **{"Idempotency-Key": "overtaken-1"})
    assert SECRETS["name"] not in replay.text


@pytest.fixture
def retention_settings(database_url: str) -> Settings:
    return make_settings(database_url, personal_data_retention_days=30)


async def test_retention_erases_customers_archived_long_enough(
    retention_settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    from services.callback.main import create_app as create_callback_app
    from services.intake.main import create_app
    from tests.integration.conftest import serving

    refusal = {"reason": "out_of_scope", "explanation": "第三方", "redirect": "应用提供商"}

    async def archived(api: Api, cb: Api, customer: str) -> str:
        cid = str((await api.accept(_body(customer))).json()["id"])
        assert (
            await api.client.post(f"/complaints/{cid}/refusal", json=refusal, headers=api.headers())
        ).status_code == 200
        assert (await call(cb, cid, "archive", {"summary": "closed"})).status_code == 200
        return cid

    async with (
        serving(create_app(retention_settings, clock=clock), token) as api,
        serving(create_callback_app(retention_settings, clock=clock), token) as cb,
    ):
        old = await archived(api, cb, "ret-old")
        mixed_archived = await archived(api, cb, "ret-mixed")
        mixed_open = (await api.accept(_body("ret-mixed"))).json()["id"]
        clock.advance(timedelta(days=20))
        recent = await archived(api, cb, "ret-recent")
        clock.advance(timedelta(days=11))
        await api.accept(_body("ret-trigger"))  # a new batch: housekeeping runs
        for _ in range(400):
            shown = (await api.get(f"/complaints/{old}")).json()
            if shown["description"] == ERASED_TEXT:
                break
            await asyncio.sleep(0.025)
        assert shown["personal_data_erased_at"] is not None
        history = (await api.get(f"/complaints/{old}/history")).json()["events"]
        assert history[-1]["actor"] == {"id": "retention", "role": "system"}
        for kept in (mixed_archived, mixed_open, recent):
            assert (await api.get(f"/complaints/{kept}")).json()["description"] == SECRETS[
                "description"
            ]
