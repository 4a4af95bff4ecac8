"""An Idempotency-Key answers only the request it was first used with: ids that no two clients
share, a fingerprint of the request on every event, 422 for a key reused once its stored
answer is gone, and stored answers that hold no personal data."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from shared.readmodel.tables import idempotency_keys
from shared.store import application
from shared.store.facade import ComplaintStore
from tests.conftest import intake_body
from tests.integration.conftest import Api
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
