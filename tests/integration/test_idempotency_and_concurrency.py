"""Retries, stale writes and racing writers: nothing duplicated, nothing lost."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from shared.domain.clock import FixedClock
from shared.domain.codes import Complexity
from shared.domain.context import Actor, CommandContext
from shared.http.fingerprint import request_fingerprint
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import POLICY, intake_body, make_settings
from tests.integration.conftest import Api

REFUSAL = {"reason": "out_of_scope", "explanation": "第三方应用", "redirect": "应用提供商"}


async def test_same_key_same_body_returns_the_first_answer(api: Api, store: ComplaintStore) -> None:
    before = await store.ping()
    first = await api.accept(intake_body(), **{"Idempotency-Key": "retry-1"})
    again = await api.accept(intake_body(), **{"Idempotency-Key": "retry-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await store.ping() == before + 3  # one complaint + its two index events, once


async def test_an_acceptance_stores_its_answer_with_its_events(
    api: Api, store: ComplaintStore
) -> None:
    """No claim before the acceptance and no answer after it: the answer, written in the
    events' transaction with their position filled in, is replayed as it was first sent."""
    await api.accept(intake_body())  # the keyed acceptance's events are not the first
    first = await api.accept(intake_body(), **{"Idempotency-Key": "with-events"})
    again = await api.accept(intake_body(), **{"Idempotency-Key": "with-events"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    shown = ("content-type", "location", "content-location", "etag", "event-position")
    assert [again.headers[h] for h in shown] == [first.headers[h] for h in shown]
    assert first.headers["Event-Position"] == str(first.json()["position"]) != "1"


async def test_racing_duplicates_of_a_keyed_acceptance_accept_once(
    api: Api, store: ComplaintStore
) -> None:
    """Without a claim, duplicates racing each other collide on the complaint's id (it comes
    from the key): one acceptance, every duplicate answered with it; another body, 422."""
    before = await store.ping()
    same = await asyncio.gather(
        *(api.accept(intake_body(), **{"Idempotency-Key": "racing"}) for _ in range(6))
    )
    assert [r.status_code for r in same] == [201] * 6, [r.text for r in same]
    assert len({r.json()["id"] for r in same}) == 1
    assert len(await store.read(before, 100)) == 3  # a complaint + its two index events, once
    others = await asyncio.gather(
        *(
            api.accept(intake_body(demand=f"诉求 {n}"), **{"Idempotency-Key": "racing-2"})
            for n in range(4)
        )
    )
    assert sorted(r.status_code for r in others) == [201, 422, 422, 422], [r.text for r in others]
    assert len(await store.read(before, 100)) == 6


async def test_answers_are_forgotten_after_the_retention_but_nothing_is_duplicated(
    api: Api, store: ComplaintStore, clock: FixedClock
) -> None:
    """Stored answers hold personal data: they go after a day. A retry after that is a new
    request, and an acceptance still finds its complaint, whose id comes from the key."""
    first = await api.accept(intake_body(), **{"Idempotency-Key": "old-1"})
    clock.advance(timedelta(hours=23))
    await api.accept(intake_body(), **{"Idempotency-Key": "young-1"})
    day = 24 * 3600
    assert await store.idempotency.forget_older_than(day) == 0  # both younger than a day
    clock.advance(timedelta(hours=2))
    assert await store.idempotency.forget_older_than(day) == 1  # old-1 only
    position = await store.ping()
    again = await api.accept(intake_body(), **{"Idempotency-Key": "old-1"})
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers  # answered anew…
    assert again.json()["id"] == first.json()["id"]  # …with the same complaint
    assert await store.ping() == position  # and nothing written twice
    replayed = await api.accept(intake_body(), **{"Idempotency-Key": "young-1"})
    assert replayed.headers["Idempotent-Replayed"] == "true"


async def test_same_key_other_body_is_422(api: Api, store: ComplaintStore) -> None:
    await api.accept(intake_body(), **{"Idempotency-Key": "retry-2"})
    position = await store.ping()
    other = await api.accept(intake_body(demand="另一个诉求"), **{"Idempotency-Key": "retry-2"})
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert await store.ping() == position


async def test_keys_belong_to_their_client(api: Api) -> None:
    mine = await api.accept(intake_body(), sub="agent-a", **{"Idempotency-Key": "shared-key"})
    theirs = await api.accept(intake_body(), sub="agent-b", **{"Idempotency-Key": "shared-key"})
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


async def test_key_still_running_is_409(api: Api, store: ComplaintStore) -> None:
    # Another process holds the key right now (claimed, not finished).
    body = intake_body()
    digest = _fingerprint("/complaints", "agent-1", body)
    await store.idempotency.claim("agent-1", "busy-key", digest)
    response = await api.accept(body, **{"Idempotency-Key": "busy-key"})
    assert response.status_code == 409
    assert response.headers["Retry-After"] == "1"


async def test_an_acceptance_found_again_stores_its_answer_over_a_claim_that_ran_out(
    api: Api, store: ComplaintStore, clock: FixedClock
) -> None:
    """Its stored answer is gone, and an older process claimed the key with the same request
    and died: the retry finds the complaint, answers it, and stores that answer."""
    body = intake_body()
    first = await api.accept(body, **{"Idempotency-Key": "ran-out"})
    # Forgotten (as an erasure or the retention forgets it; not by the clock, which the
    # app's own retention job would race).
    assert await store.idempotency.forget_complaints([UUID(first.json()["id"])]) == 1
    await store.idempotency.claim(
        "agent-1", "ran-out", _fingerprint("/complaints", "agent-1", body)
    )
    clock.advance(timedelta(seconds=31))  # the lease runs out
    again = await api.accept(body, **{"Idempotency-Key": "ran-out"})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] == first.json()["id"]
    replayed = await api.accept(body, **{"Idempotency-Key": "ran-out"})
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == again.json()


async def test_a_dead_claim_is_taken_over_without_a_second_event(
    api: Api, store: ComplaintStore, clock: FixedClock
) -> None:
    """The first attempt wrote its event, then its process died before storing the answer."""
    created = (await api.accept(intake_body())).json()
    ctx = CommandContext(Actor("agent-1", "agent"), "intake", clock(), None, "dead-key")
    complaint_id = UUID(created["id"])
    await store.execute(
        complaint_id,
        lambda c: c.refuse(*_refusal_args(), ctx),
        ctx=ctx,
    )
    path = f"/complaints/{complaint_id}/refusal"
    digest = _fingerprint(path, "agent-1", REFUSAL)
    await store.idempotency.claim("agent-1", "dead-key", digest)  # never completed
    clock.advance(timedelta(seconds=31))  # the lease runs out

    retry = await api.client.post(
        path, json=REFUSAL, headers=api.headers(**{"Idempotency-Key": "dead-key"})
    )
    assert retry.status_code == 200, retry.text
    assert retry.json()["version"] == 2
    history = (await api.get(f"/complaints/{complaint_id}/history")).json()["events"]
    assert [e["type"] for e in history] == ["Accepted", "Refused"]


def _fingerprint(path: str, client: str, body: dict[str, Any]) -> str:
    """The fingerprint the service gives this request (see shared.http.fingerprint)."""
    secret = make_settings("sqlite:///unused.sqlite3").index_key.get_secret_value().encode()
    return request_fingerprint(secret, "POST", path, client, json.dumps(body).encode())


def _refusal_args() -> tuple[object, str, str]:
    from shared.domain.codes import RefusalReason

    return RefusalReason.OUT_OF_SCOPE, REFUSAL["explanation"], REFUSAL["redirect"]


async def test_stale_if_match_is_412_and_appends_nothing(api: Api) -> None:
    created = (await api.accept(intake_body())).json()
    path = f"/complaints/{created['id']}/refusal"
    stale = await api.client.post(path, json=REFUSAL, headers=api.headers(**{"If-Match": '"7"'}))
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert (await api.get(f"/complaints/{created['id']}")).json()["version"] == 1
    bare = await api.client.post(path, json=REFUSAL, headers=api.headers(**{"If-Match": "1"}))
    assert bare.status_code == 200


async def test_illegal_transition_is_409_naming_the_status(api: Api) -> None:
    created = (await api.accept(intake_body())).json()
    path = f"/complaints/{created['id']}/refusal"
    assert (await api.client.post(path, json=REFUSAL, headers=api.headers())).status_code == 200
    again = await api.client.post(path, json=REFUSAL, headers=api.headers())
    assert again.status_code == 409
    assert again.json()["current_status"] == "refused"
    assert (await api.get(f"/complaints/{created['id']}")).json()["version"] == 2


async def test_thirty_concurrent_writers_to_one_complaint_lose_nothing(
    api: Api, store: ComplaintStore, clock: FixedClock
) -> None:
    created = (await api.accept(intake_body())).json()
    complaint_id = UUID(created["id"])
    ctx = CommandContext(Actor("sup-1", "supervisor"), "investigation", clock())
    await store.execute(
        complaint_id, lambda c: c.assign("net", "inv-1", Complexity.SIMPLE, POLICY, ctx), ctx=ctx
    )

    async def add(n: int) -> int:
        written = await store.execute(
            complaint_id,
            lambda c: c.add_evidence("call_record", f"CDR-{n}", "", ctx),
            ctx=replace(ctx, request_id=f"request-{n}"),  # one per HTTP request
        )
        return written.complaint.version

    versions = await asyncio.gather(*(add(n) for n in range(30)))
    assert sorted(versions) == list(range(3, 33))
    complaint = await store.get(complaint_id)
    assert sorted(e["ref"] for e in complaint.evidence) == sorted(f"CDR-{n}" for n in range(30))


async def test_thirty_concurrent_writers_in_two_processes_lose_nothing(
    api: Api,
    settings,
    clock: FixedClock,  # type: ignore[no-untyped-def]
) -> None:
    """Two stores (as two service processes would have) race on one complaint."""
    created = (await api.accept(intake_body())).json()
    complaint_id = UUID(created["id"])
    ctx = CommandContext(Actor("sup-1", "supervisor"), "investigation", clock())
    stores = [ComplaintStore(settings, clock=clock) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        await stores[0].execute(
            complaint_id,
            lambda c: c.assign("net", "inv-1", Complexity.SIMPLE, POLICY, ctx),
            ctx=ctx,
        )
        results = await asyncio.gather(
            *(
                stores[n % 2].execute(
                    complaint_id,
                    lambda c, n=n: c.add_evidence("call_record", f"CDR-{n}", "", ctx),
                    ctx=replace(ctx, request_id=f"request-{n}"),  # one per HTTP request
                )
                for n in range(30)
            ),
            return_exceptions=True,
        )
        applied = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BaseException)]
        assert all(type(r).__name__ == "ConcurrentModification" for r in refused)
        complaint = await stores[0].get(complaint_id)
        # Every acknowledged write is there, and nothing else.
        assert len(complaint.evidence) == len(applied)
        assert complaint.version == 2 + len(applied)
        assert len(applied) >= 25
    finally:
        for s in stores:
            await s.close()


async def test_concurrent_complaints_of_one_customer_form_one_repeat_chain(api: Api) -> None:
    responses = await asyncio.gather(*(api.accept(intake_body()) for _ in range(12)))
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    complaints = [r.json() for r in responses]
    firsts = [c for c in complaints if c["repeat_of"] is None]
    assert len(firsts) == 1
    links = [c["repeat_of"] for c in complaints if c["repeat_of"]]
    assert len(set(links)) == len(links) == 11  # a chain: each earlier complaint linked once
    assert len({c["acceptance_no"] for c in complaints}) == 12


async def test_failure_after_the_save_is_not_applied_again_on_retry(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event is durable but the answer never left: the retry returns it, not a 409."""
    import shared.http.commands as commands

    created = (await api.accept(intake_body())).json()
    path = f"/complaints/{created['id']}/refusal"
    real_answer = commands.answer
    calls = {"n": 0}

    def answer_once_broken(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("lost after the save")
        return real_answer(*args, **kwargs)

    monkeypatch.setattr(commands, "answer", answer_once_broken)
    headers = api.headers(**{"Idempotency-Key": "after-save"})
    lost = await api.client.post(path, json=REFUSAL, headers=headers)
    assert lost.status_code == 500 and lost.headers["X-Request-ID"]
    retry = await api.client.post(path, json=REFUSAL, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "refused"
    history = (await api.get(f"/complaints/{created['id']}/history")).json()["events"]
    assert [e["type"] for e in history] == ["Accepted", "Refused"]


@pytest.mark.parametrize("same", ["request", "idempotency_key"])
async def test_a_race_lost_to_our_own_committed_write_is_not_applied_twice(
    api: Api, settings: Settings, clock: FixedClock, same: str
) -> None:
    """While this request runs, its own event commits elsewhere: a save the library retried
    after a lost COMMIT (same request), or a takeover of an expired key (same key)."""
    created = (await api.accept(intake_body())).json()
    complaint_id = UUID(created["id"])
    ours = CommandContext(Actor("inv-1", "investigator"), "investigation", clock(), None, "k-9")
    stores = [ComplaintStore(settings, clock=clock) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        setup = replace(ours, idempotency_key=None, request_id="setup")  # a request of its own
        await stores[0].execute(
            complaint_id,
            lambda c: c.assign("net", "inv-1", Complexity.SIMPLE, POLICY, setup),
            ctx=setup,
        )
        other = ours if same == "request" else replace(ours, request_id="taken-over")
        raced = {"done": False}

        def add(c: Any) -> None:
            if not raced["done"]:
                raced["done"] = True
                stores[1].app.execute(
                    complaint_id,
                    lambda c2: c2.add_evidence("call_record", "CDR-1", "", other),
                    expected_version=None,
                    ctx=other,
                )
            c.add_evidence("call_record", "CDR-1", "", ours)

        written = await stores[0].execute(complaint_id, add, ctx=ours)
        assert written.complaint.version == 3
        complaint = await stores[0].get(complaint_id)
        assert [e["ref"] for e in complaint.evidence] == ["CDR-1"]
        assert complaint.version == 3
    finally:
        for s in stores:
            await s.close()


async def test_refused_and_conflicting_answers_are_not_remembered(api: Api) -> None:
    created = (await api.accept(intake_body())).json()
    path = f"/complaints/{created['id']}/refusal"
    forbidden = await api.client.post(
        path, json=REFUSAL, headers=api.headers("investigator", "inv-1", **{"Idempotency-Key": "k"})
    )
    assert forbidden.status_code == 403
    # The same client, now acting with a role that may: the key was not burnt by the 403.
    token = api.token("agent", "inv-1", roles=["investigator", "agent"])
    allowed = await api.client.post(
        path, json=REFUSAL, headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "k"}
    )
    assert allowed.status_code == 200, allowed.text
