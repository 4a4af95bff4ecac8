"""An Idempotency-Key answers only the request it was first used with: ids that no two clients
share, a fingerprint of the request on every event, 422 for a key reused once its stored
answer is gone, and stored answers that hold no personal data."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from shared.domain.context import Actor, CommandContext
from shared.domain.personal import text_of
from shared.settings import Settings
from shared.store import application
from shared.store.facade import ComplaintStore
from shared.store.tables import idempotency_keys
from tests.conftest import intake_body
from tests.integration.conftest import Api, undo_after_list_filters, undo_list_filters
from tests.integration.test_investigation import ASSIGN, EVIDENCE

DAY = 24 * 3600


def _key(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def _forget_answers(store: ComplaintStore) -> None:
    """As the retention does after 24 h: every stored answer is gone."""
    async with store.engine.begin() as conn:
        await conn.execute(idempotency_keys.delete())


async def _rows(store: ComplaintStore) -> list[dict[str, Any]]:
    async with store.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(select(idempotency_keys))).mappings()]


async def test_ids_from_keys_never_collide_between_clients(api: Api, store: ComplaintStore) -> None:
    """`ops` with key `alice:k1` and `ops:alice` with key `k1` once shared a complaint id."""
    ops = await api.accept(intake_body(demand="OPS-DEMAND"), sub="ops", **_key("alice:k1"))
    alice = await api.accept(intake_body(demand="ALICE-DEMAND"), sub="ops:alice", **_key("k1"))
    assert ops.status_code == alice.status_code == 201, alice.text
    assert "Idempotent-Replayed" not in alice.headers
    assert alice.json()["id"] != ops.json()["id"]
    assert alice.json()["demand"] == "ALICE-DEMAND"
    # Each finds its own complaint again, even once the stored answers are gone.
    await _forget_answers(store)
    position = await store.ping()
    again = await api.accept(intake_body(demand="ALICE-DEMAND"), sub="ops:alice", **_key("k1"))
    assert again.status_code == 201
    assert (again.json()["id"], again.json()["demand"]) == (alice.json()["id"], "ALICE-DEMAND")
    assert await store.ping() == position


async def test_a_complaint_accepted_under_an_old_id_is_found_by_its_own_key_only(
    api: Api, store: ComplaintStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accepted before the ids changed (`complaint:{sub}:{key}`), its key still finds it once
    the stored answer is gone; the client whose old id was the same does not."""
    with monkeypatch.context() as patched:
        patched.setattr(application, "key_complaint_id", application.legacy_key_complaint_id)
        before = await api.accept(intake_body(demand="OLD-ID"), sub="ops", **_key("alice:k1"))
    assert before.status_code == 201
    assert UUID(before.json()["id"]) == application.legacy_key_complaint_id("ops", "alice:k1")
    await _forget_answers(store)
    position = await store.ping()
    retry = await api.accept(intake_body(demand="OLD-ID"), sub="ops", **_key("alice:k1"))
    assert retry.status_code == 201
    assert retry.json()["id"] == before.json()["id"]
    assert await store.ping() == position  # nothing written twice
    other = await api.accept(intake_body(demand="MINE"), sub="ops:alice", **_key("k1"))
    assert other.status_code == 201
    assert other.json()["id"] != before.json()["id"]
    assert other.json()["demand"] == "MINE"


async def test_every_event_records_the_fingerprint_of_its_request(
    api: Api, store: ComplaintStore
) -> None:
    first = (await api.accept(intake_body())).json()
    second = (await api.accept(intake_body(demand="其他"))).json()
    refusal = {"reason": "out_of_scope", "explanation": "第三方应用", "redirect": "应用提供商"}
    path = f"/complaints/{first['id']}/refusal"
    assert (await api.client.post(path, json=refusal, headers=api.headers())).status_code == 200
    events = await store.history(UUID(first["id"]))
    prints = [e.ctx["request_fingerprint"] for e in events]
    assert all(isinstance(p, str) and len(p) == 64 for p in prints)
    assert prints[0] != prints[1]  # acceptance and refusal
    other = (await store.history(UUID(second["id"])))[0].ctx["request_fingerprint"]
    assert other not in prints  # same client and path, another body
    # A keyed digest: neither the phone nor a plain digest of the body can be found in it.
    assert "13812341234" not in str(events[0].ctx)


@pytest.mark.parametrize("gone_by", ["retention", "erasure"])
async def test_an_acceptance_key_reused_after_its_answer_is_gone_is_422(
    api: Api, store: ComplaintStore, gone_by: str
) -> None:
    first = await api.accept(intake_body(), **_key("reuse-1"))
    assert first.status_code == 201
    if gone_by == "retention":
        await _forget_answers(store)
    else:
        erased = await api.client.post("/customers/cust-1/erasure", headers=api.headers("admin"))
        assert erased.status_code == 200
    position = await store.ping()
    rows = await _rows(store)

    other = await api.accept(intake_body(demand="另一个诉求"), **_key("reuse-1"))
    assert other.status_code == 422, other.text
    assert other.headers["content-type"] == "application/problem+json"
    problem = other.json()
    assert problem["type"] == "urn:complaints:problem:idempotency-key-reused"
    assert "new key" in problem["detail"]
    assert first.json()["id"] not in other.text  # never the other request's complaint
    assert await store.ping() == position  # nothing stored…
    assert await _rows(store) == rows  # …not even the answer: the key stays the first's

    # The first request, sent again, finds its complaint as it is now.
    again = await api.accept(intake_body(), **_key("reuse-1"))
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert await store.ping() == position
    if gone_by == "erasure":
        assert again.json()["customer"]["name"] == "[erased]"


async def test_a_command_key_reused_after_its_answer_is_gone_is_422(
    api: Api, inv: Api, store: ComplaintStore
) -> None:
    cid = (await api.accept(intake_body())).json()["id"]
    path = f"/complaints/{cid}"

    async def post(name: str, body: dict[str, Any], key: str) -> httpx.Response:
        role = "supervisor" if name == "assignment" else "investigator"
        return await inv.client.post(
            f"{path}/{name}", json=body, headers=inv.headers(role, "inv-42", **_key(key))
        )

    assert (await post("assignment", ASSIGN, "assign-1")).status_code == 200
    added = await post("evidence", EVIDENCE, "evidence-1")
    assert added.status_code == 200
    await _forget_answers(store)
    position = await store.ping()
    other = await post("evidence", {**EVIDENCE, "ref": "ALARM-9999"}, "evidence-1")
    assert other.status_code == 422, other.text
    assert other.json()["type"] == "urn:complaints:problem:idempotency-key-reused"
    assert await store.ping() == position
    # The same request again: answered as of what it wrote, not applied twice.
    again = await post("evidence", EVIDENCE, "evidence-1")
    assert again.status_code == 200, again.text
    assert again.json()["version"] == added.json()["version"]
    assert [e["ref"] for e in again.json()["evidence"]] == ["ALARM-4417"]
    assert await store.ping() == position


async def test_a_stored_answer_and_another_body_is_422(api: Api, store: ComplaintStore) -> None:
    first = await api.accept(intake_body(), **_key("stored-1"))
    position = await store.ping()
    other = await api.accept(intake_body(demand="另一个诉求"), **_key("stored-1"))
    assert other.status_code == 422
    assert other.json()["type"] == "urn:complaints:problem:idempotency-key-reused"
    assert first.json()["id"] not in other.text
    assert await store.ping() == position


async def test_a_claim_taken_before_fingerprints_is_still_matched_by_its_retry(
    api: Api, store: ComplaintStore
) -> None:
    """A stored answer named its request by a plain SHA-256 before: a retry still finds it."""
    from shared.http.fingerprint import legacy_request_hash

    body = intake_body()
    first = await api.accept(body, **_key("old-claim"))
    raw = httpx.Request("POST", "http://test/complaints", json=body).content
    async with store.engine.begin() as conn:
        await conn.execute(
            idempotency_keys.update().values(
                request_hash=legacy_request_hash("POST", "/complaints", raw)
            )
        )
    again = await api.accept(body, **_key("old-claim"))
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = await api.accept(intake_body(demand="别的"), **_key("old-claim"))
    assert other.status_code == 422


#: A customer whose every personal value is easy to find in raw bytes.
MARKED = {
    "name": "Markedname Zq4",
    "phone": "13955501234",
    "email": "zq4.marked@example.cn",
    "description": "MARKER-DESCRIPTION-ZQ4",
    "evidence": "MARKER-EVIDENCE-ZQ4",
}


def _marked_body(customer_id: str = "cust-zq4") -> dict[str, Any]:
    return intake_body(
        customer={
            "id": customer_id,
            "name": MARKED["name"],
            "phone": MARKED["phone"],
            "email": MARKED["email"],
        },
        service_number=MARKED["phone"],
        description=MARKED["description"],
    )


def _plaintext_in(blob: bytes) -> set[str]:
    return {field for field, value in MARKED.items() if value.encode() in blob}


async def _raw_rows(store: ComplaintStore) -> bytes:
    """The idempotency table's rows, every value as stored."""
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(idempotency_keys))).all()
    return b"\n".join(
        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
        for row in rows
        for v in row
    )


def _database_files(settings: Settings) -> bytes:
    """The SQLite database's files as they lie on disk: the main file and its WAL."""
    path = Path(str(settings.url.database))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


async def test_stored_answers_hold_no_personal_data_and_replay_it_correctly(
    api: Api, inv: Api, store: ComplaintStore, settings: Settings, backend: str
) -> None:
    accepted = await api.accept(_marked_body(), **_key("marked-1"))
    assert accepted.status_code == 201
    cid = accepted.json()["id"]
    assign = {**ASSIGN, "investigator": "inv-42"}
    headers = inv.headers("supervisor", "sup-1", **_key("marked-assign"))
    path = f"/complaints/{cid}"
    assert (await inv.client.post(f"{path}/assignment", json=assign, headers=headers)).is_success
    evidence = {**EVIDENCE, "summary": MARKED["evidence"]}
    headers = inv.headers("investigator", "inv-42", **_key("marked-evidence"))
    added = await inv.client.post(f"{path}/evidence", json=evidence, headers=headers)
    assert added.status_code == 200
    assert MARKED["evidence"] in added.text and MARKED["name"] in accepted.text

    assert len(await _rows(store)) == 3
    assert _plaintext_in(await _raw_rows(store)) == set()
    if backend == "sqlite":
        assert _plaintext_in(_database_files(settings)) == set()

    # Shown again from the store, each answer is the one first given.
    again = await api.accept(_marked_body(), **_key("marked-1"))
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == accepted.json()
    assert (again.headers["ETag"], again.headers["Location"]) == (
        accepted.headers["ETag"],
        accepted.headers["Location"],
    )
    replayed = await inv.client.post(f"{path}/evidence", json=evidence, headers=headers)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == added.json()  # masked for the investigator, as first shown
    # Never more than the caller's token shows now: the same client, no longer an agent.
    token = api.token("supervisor", "agent-1")
    masked = await api.client.post(
        "/complaints",
        json=_marked_body(),
        headers={"Authorization": f"Bearer {token}", **_key("marked-1")},
    )
    assert masked.headers["Idempotent-Replayed"] == "true"
    assert masked.json()["id"] == cid
    assert MARKED["phone"] not in masked.text and "139****1234" in masked.text


@pytest.mark.parametrize("command", ["acceptance", "evidence"])
async def test_an_answer_stored_after_the_erasure_replays_no_plaintext(
    api: Api,
    inv: Api,
    store: ComplaintStore,
    settings: Settings,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """The request read the customer's data, then the customer was erased (and their stored
    answers forgotten), then the request stored its answer."""
    cid = None
    if command == "evidence":
        cid = (await api.accept(_marked_body())).json()["id"]
        assign = inv.headers("supervisor", "sup-1")
        await inv.client.post(f"/complaints/{cid}/assignment", json=ASSIGN, headers=assign)
    app_store: ComplaintStore = api.client._transport.app.state.store  # type: ignore[attr-defined]
    inv_store: ComplaintStore = inv.client._transport.app.state.store  # type: ignore[attr-defined]
    complete = app_store.idempotency.complete

    async def erased_first(*args: Any, **kwargs: Any) -> None:
        erased = await api.client.post("/customers/cust-zq4/erasure", headers=api.headers("admin"))
        assert erased.status_code == 200
        await complete(*args, **kwargs)

    for s in (app_store, inv_store):
        monkeypatch.setattr(s.idempotency, "complete", erased_first)
    # An acceptance stores its answer with its events (no `complete`): the erasure comes
    # between that commit and the answer sent, and forgets the answer it stored.
    accept = app_store.accept

    async def erased_after(*args: Any, **kwargs: Any) -> Any:
        written = await accept(*args, **kwargs)
        erased = await api.client.post("/customers/cust-zq4/erasure", headers=api.headers("admin"))
        assert erased.status_code == 200
        return written

    monkeypatch.setattr(app_store, "accept", erased_after)

    async def send() -> httpx.Response:
        if command == "acceptance":
            return await api.accept(_marked_body(), **_key("overlap-1"))
        evidence = {**EVIDENCE, "summary": MARKED["evidence"]}
        headers = inv.headers("investigator", "inv-42", **_key("overlap-1"))
        return await inv.client.post(f"/complaints/{cid}/evidence", json=evidence, headers=headers)

    first = await send()
    assert first.status_code in (200, 201), first.text
    monkeypatch.undo()
    assert _plaintext_in(await _raw_rows(store)) == set()
    if backend == "sqlite":
        assert _plaintext_in(_database_files(settings)) == set()
    replay = await send()
    if command == "evidence":
        assert replay.headers["Idempotent-Replayed"] == "true"
    else:  # its stored answer went with the erasure: answered anew, by the key's complaint
        assert "Idempotent-Replayed" not in replay.headers
        assert replay.json()["id"] == first.json()["id"]
    assert _plaintext_in(replay.content) == set()
    assert replay.json()["customer"]["name"] == "[erased]"


async def test_evidence_written_after_the_erasure_is_stored_and_replayed_erased(
    api: Api,
    inv: Api,
    store: ComplaintStore,
    settings: Settings,
    backend: str,
    clock: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The erasure commits between the moment the command loads the complaint (with the
    customer's data) and its save: the save loses the race, runs again on the erased
    complaint, and neither its events, its answer nor its stored answer hold plaintext."""
    from shared.domain.complaint import Complaint

    cid = (await api.accept(_marked_body())).json()["id"]
    assign = inv.headers("supervisor", "sup-1")
    await inv.client.post(f"/complaints/{cid}/assignment", json=ASSIGN, headers=assign)
    other = ComplaintStore(settings, clock=clock)  # the erasing process
    await other.open()
    add_evidence = Complaint.add_evidence
    admin = CommandContext(Actor("admin-1", "admin"), "intake", clock())

    def erased_meanwhile(self: Complaint, *args: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(Complaint, "add_evidence", add_evidence)  # once
        # Read before the erasure: sealed under the customer's live key, which opens it.
        assert text_of(self.intake["customer"]["name"]) == MARKED["name"]
        other.app.erase_customer("cust-zq4", admin)
        add_evidence(self, *args, **kwargs)

    monkeypatch.setattr(Complaint, "add_evidence", erased_meanwhile)
    evidence = {**EVIDENCE, "summary": MARKED["evidence"]}
    headers = inv.headers("investigator", "inv-42", **_key("overlap-2"))
    try:
        added = await inv.client.post(f"/complaints/{cid}/evidence", json=evidence, headers=headers)
    finally:
        await other.close()
    assert added.status_code == 200, added.text
    assert _plaintext_in(added.content) == set()
    history = [e.type for e in await store.history(UUID(cid))]
    assert history[-2:] == ["PersonalDataErased", "EvidenceAdded"]
    assert _plaintext_in(await _raw_rows(store)) == set()
    if backend == "sqlite":
        assert _plaintext_in(_database_files(settings)) == set()
    replay = await inv.client.post(f"/complaints/{cid}/evidence", json=evidence, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == added.json()


async def test_answers_stored_before_the_upgrade_lose_their_plaintext(
    api: Api, store: ComplaintStore, settings: Settings
) -> None:
    """Revision 0016 turns the bodies stored before it into recipes; the retry still finds
    its answer, masked unless the caller's token sees personal data. The upgrade is the setup
    step's, which then scrubs: the old bodies are gone from the files on disk too (SQLite);
    the table is vacuumed (PostgreSQL)."""
    from alembic import command as alembic
    from sqlalchemy import text

    from shared.cli.setup_store import setup
    from shared.readmodel.migrate import alembic_config

    accepted = await api.accept(_marked_body(), **_key("before-upgrade"))
    # The answer as the service stored it before: its body as sent, no recipe.
    async with store.engine.begin() as conn:
        await conn.execute(idempotency_keys.update().values(body=accepted.content, recipe=None))
        await conn.execute(text("ALTER TABLE idempotency_keys DROP COLUMN recipe"))
        await conn.execute(text("DROP INDEX ix_audit_checkpoints_announced"))  # (0017's)
        await conn.execute(text("ALTER TABLE audit_chain DROP COLUMN masked_line"))  # (0019's)
        await undo_list_filters(conn)  # (0021's)
        await undo_after_list_filters(conn)
        await conn.run_sync(lambda sync: alembic.stamp(alembic_config(sync), "0015"))
    async with store.engine.connect() as conn:
        (body,) = (await conn.execute(text("SELECT body FROM idempotency_keys"))).one()
    assert _plaintext_in(bytes(body)) == set(MARKED) - {"evidence"}
    await store.engine.dispose()  # the setup step runs alone, as on a real upgrade
    await setup(settings)
    assert _plaintext_in(await _raw_rows(store)) == set()
    if settings.is_postgres:  # vacuumed (what it can remove depends on open snapshots)
        async with store.engine.connect() as conn:
            vacuumed = await conn.execute(
                text(
                    "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'idempotency_keys'"
                )
            )
            assert vacuumed.scalar() is not None
    else:
        assert _plaintext_in(_database_files(settings)) == set()
    again = await api.accept(_marked_body(), **_key("before-upgrade"))
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == accepted.json()  # an agent sees what it saw
