"""The audit export verifies against signed checkpoints, and every kind of tampering is caught."""

from __future__ import annotations

import base64
import copy
import json
import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.audit.checkpoints import public_pem
from shared.audit.verify import checkpoint_message, digest, verify
from shared.domain.clock import FixedClock
from tests.conftest import intake_body, pinned_key
from tests.integration.conftest import Api

TRIALS = 300
REFUSAL = {"reason": "out_of_scope", "explanation": "第三方", "redirect": "应用提供商"}


async def _record_some(api: Api, clock: FixedClock, count: int = 6) -> int:
    last = 0
    for n in range(count):
        clock.advance(timedelta(minutes=5))
        body = intake_body(
            customer={
                "id": f"c{n % 3}",
                "name": "李娜",
                "phone": "13900001111",
                "email": "li.na@example.cn",
            }
        )
        created = (await api.accept(body)).json()
        last = created["position"]
        if n % 2:
            refused = await api.client.post(
                f"/complaints/{created['id']}/refusal", json=REFUSAL, headers=api.headers()
            )
            last = refused.json()["position"]
    return last


async def _chained(api: Api, clock: FixedClock) -> tuple[list[bytes], dict[str, Any]]:
    """An export of everything, and the checkpoints, once the chain has caught up."""
    await _record_some(api, clock)
    await _signed_head(api)
    export = await api.client.get("/audit/export", headers=api.headers("regulator"))
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    checkpoints = (await api.get("/audit/checkpoints", role="regulator")).json()
    return export.content.splitlines(keepends=True), checkpoints


async def _signed_head(api: Api) -> None:
    """Wait for the chain to catch up with the store, and sign its head."""
    head = (await api.client.get("/ready")).json()["position"]
    for _ in range(200):
        signed = await api.client.post("/audit/checkpoints", headers=api.headers("analyst"))
        if signed.status_code == 201 and signed.json()["position"] == head:
            break
        import asyncio

        await asyncio.sleep(0.05)
    else:
        pytest.fail("the audit chain did not catch up")


async def test_an_untouched_export_is_valid(api: Api, clock: FixedClock) -> None:
    lines, checkpoints = await _chained(api, clock)
    verdict = verify(lines, checkpoints, key=pinned_key())
    assert verdict.valid, verdict.message
    records = [json.loads(line) for line in lines[:-1]]
    assert [r["position"] for r in records] == sorted(r["position"] for r in records)
    assert {r["aggregate"] for r in records} >= {"Complaint", "AcceptanceNumber"}
    assert records[0]["prev_hash"] == "0" * 64
    assert json.loads(lines[-1])["trailer"]["count"] == len(records)


async def test_tampering_is_caught_every_time(api: Api, clock: FixedClock) -> None:
    lines, checkpoints = await _chained(api, clock)
    rng = random.Random(20261122)
    kinds = ["flip", "delete", "insert", "reorder", "truncate", "edit"]
    for trial in range(TRIALS):
        kind = kinds[trial % len(kinds)]
        tampered = _tamper(kind, lines, rng)
        verdict = verify(tampered, checkpoints, key=pinned_key())
        assert not verdict.valid, f"trial {trial} ({kind}) was not caught"


def _tamper(kind: str, lines: list[bytes], rng: random.Random) -> list[bytes]:
    out = list(lines)
    body = len(out) - 1  # the last line is the trailer
    i = rng.randrange(body)
    if kind == "flip":
        line = bytearray(out[i])
        at = rng.randrange(len(line) - 1)  # not the newline
        line[at] ^= rng.choice([1, 2, 4, 8, 16, 32])
        out[i] = bytes(line)
    elif kind == "delete":
        del out[i]
    elif kind == "insert":
        out.insert(rng.randrange(body + 1), out[rng.randrange(body)])
    elif kind == "reorder":
        j = rng.choice([x for x in range(body) if x != i])
        out[i], out[j] = out[j], out[i]
    elif kind == "truncate":
        out = out[: rng.randrange(body)]
    else:  # rewrite a field of an event, as an editor would, keeping valid JSON
        record = json.loads(out[i])
        record["at"] = "2020-01-01T00:00:00+00:00"
        out[i] = (json.dumps(record, ensure_ascii=False) + "\n").encode()
    return out


async def test_forged_checkpoints_are_refused(api: Api, clock: FixedClock) -> None:
    lines, checkpoints = await _chained(api, clock)
    forged_signature = copy.deepcopy(checkpoints)
    sig = bytearray(base64.b64decode(forged_signature["checkpoints"][-1]["signature"]))
    sig[0] ^= 1
    forged_signature["checkpoints"][-1]["signature"] = base64.b64encode(sig).decode()
    assert not verify(lines, forged_signature, key=pinned_key()).valid

    moved = copy.deepcopy(checkpoints)
    moved["checkpoints"][-1]["hash"] = "f" * 64
    assert not verify(lines, moved, key=pinned_key()).valid

    # The key the checkpoints file names is no credential: only the pinned one counts.
    other_key = Ed25519PrivateKey.generate()
    impostor = copy.deepcopy(checkpoints)
    impostor["public_key"] = public_pem(other_key)
    assert verify(lines, impostor, key=pinned_key()).valid
    assert not verify(lines, checkpoints, key=public_pem(other_key)).valid


async def test_a_rewritten_history_fails_against_the_checkpoint(
    api: Api, clock: FixedClock
) -> None:
    """Someone edits an early event and recomputes every hash after it: the signed head no
    longer matches."""
    from shared.audit.verify import record_hash

    lines, checkpoints = await _chained(api, clock)
    records = [json.loads(line) for line in lines[:-1]]
    records[1]["at"] = "2020-01-01T00:00:00+00:00"
    prev = records[0]["hash"]
    for record in records[1:]:
        record["prev_hash"] = prev
        record["hash"] = prev = record_hash(prev, record)
    trailer = {"trailer": {"count": len(records), "last_hash": prev}}
    rewritten = [json.dumps(r, ensure_ascii=False).encode() for r in [*records, trailer]]
    verdict = verify(rewritten, checkpoints, key=pinned_key())
    assert not verdict.valid
    assert "checkpoint" in verdict.message


async def test_a_redacted_copy_still_verifies(api: Api, clock: FixedClock) -> None:
    """A holder of an export may redact its personal data to the digests (as erasure leaves
    it) before passing it on: digests instead of plaintext, no salt. The chain holds."""
    _, checkpoints = await _chained(api, clock)
    lines = (await api.get("/audit/export", role="admin")).content.splitlines(keepends=True)
    assert b"13900001111" in b"".join(lines)  # admin reads plaintext
    erased = []
    for line in lines[:-1]:
        record = json.loads(line)
        if record["salt"]:
            customer = record["data"]["intake"]["customer"]
            for field in ("name", "phone", "email"):
                customer[field] = {"sha256": digest(record["salt"], customer[field])}
            record["salt"] = None
            intake = record["data"]["intake"]
            for field in ("service_number", "description", "demand"):
                intake[field] = {"sha256": digest(line and json.loads(line)["salt"], intake[field])}
        erased.append(json.dumps(record, ensure_ascii=False).encode())
    erased.append(lines[-1])
    verdict = verify(erased, checkpoints, key=pinned_key())
    assert verdict.valid, verdict.message
    assert b"13900001111" not in b"".join(erased)


async def test_export_period_and_roles(api: Api, clock: FixedClock) -> None:
    lines, _ = await _chained(api, clock)
    records = [json.loads(line) for line in lines[:-1]]
    middle = records[len(records) // 2]["at"]
    later = await api.client.get(
        "/audit/export", params={"from": middle}, headers=api.headers("analyst")
    )
    got = [json.loads(line) for line in later.content.splitlines()[:-1]]
    assert got and all(r["at"] >= middle for r in got)
    assert [r["position"] for r in got] == [r["position"] for r in records if r["at"] >= middle]
    for role in ("agent", "investigator", "callback", "supervisor"):
        assert (await api.get("/audit/export", role=role)).status_code == 403, role
        assert (await api.get("/audit/checkpoints", role=role)).status_code == 403, role
    refused = await api.client.post("/audit/checkpoints", headers=api.headers("regulator"))
    assert refused.status_code == 403  # the regulator reads, never writes
    backwards = await api.get("/audit/export", role="regulator", **{"from": middle, "to": middle})
    assert backwards.status_code == 422


async def test_long_periods_are_exported_in_linked_parts(api: Api, clock: FixedClock) -> None:
    """One export covers at most 366 days; consecutive ones link into one chain."""
    lines, checkpoints = await _chained(api, clock)
    first_at = datetime.fromisoformat(json.loads(lines[0])["at"])
    clock.advance(timedelta(days=400))
    await _record_some(api, clock)  # more events, a year later
    await _signed_head(api)
    whole = await api.get("/audit/export", role="regulator")
    assert whole.status_code == 422
    assert whole.json()["errors"][0]["field"] == "query.from"
    cut = (first_at + timedelta(days=366)).isoformat()
    parts = []
    for period in ({"from": first_at.isoformat(), "to": cut}, {"from": cut}):
        part = await api.client.get(
            "/audit/export", params=period, headers=api.headers("regulator")
        )
        assert part.status_code == 200, part.text
        parts.append(part.content.splitlines(keepends=True))
    checkpoints = (await api.get("/audit/checkpoints", role="regulator")).json()
    for part in parts:
        assert verify(part, checkpoints, key=pinned_key()).valid
    trailers = [json.loads(part[-1])["trailer"] for part in parts]
    assert trailers[0]["first_prev_hash"] == "0" * 64
    assert trailers[0]["last_hash"] == trailers[1]["first_prev_hash"]
    assert trailers[0]["count"] == len(lines) - 1  # everything of the first year
    assert trailers[1]["count"] > 0


def test_checkpoint_message_is_stable() -> None:
    assert checkpoint_message(7, "a" * 64, "2026-11-23T02:00:00+00:00") == (
        b'{"hash":"' + b"a" * 64 + b'","position":7,"scheme":"complaints-audit-chain/2",'
        b'"signed_at":"2026-11-23T02:00:00+00:00"}'
    )


async def test_an_export_cut_at_both_ends_with_a_new_trailer_is_refused(
    api: Api, clock: FixedClock
) -> None:
    lines, checkpoints = await _chained(api, clock)
    kept = lines[2:-4]
    records = [json.loads(line) for line in kept]
    forged = {
        "trailer": {
            **json.loads(lines[-1])["trailer"],
            "count": len(records),
            "first_prev_hash": records[0]["prev_hash"],
            "last_hash": records[-1]["hash"],
        }
    }
    verdict = verify([*kept, json.dumps(forged).encode()], checkpoints, key=pinned_key())
    assert not verdict.valid
    assert "signature" in verdict.message
    only_trailer = verify(
        [lines[-1].replace(b'"count":', b'"count":0,"x":')], checkpoints, key=pinned_key()
    )
    assert not only_trailer.valid


async def test_a_repeated_key_is_refused(api: Api, clock: FixedClock) -> None:
    lines, checkpoints = await _chained(api, clock)
    record = lines[0].decode().rstrip("\n")
    doubled = record[:-1] + ',"data":{"forged":true}}'
    assert not verify([doubled.encode(), *lines[1:]], checkpoints, key=pinned_key()).valid


async def test_a_period_export_verifies_even_when_clocks_disagree(
    api: Api, clock: FixedClock
) -> None:
    """Request times need not rise with the position; the period is one unbroken run."""
    first = (await api.accept(intake_body())).json()
    clock.advance(timedelta(minutes=-30))  # another process's clock runs behind
    await api.accept(intake_body(category="billing"))
    clock.advance(timedelta(minutes=40))
    await api.accept(intake_body(category="other"))
    lines, checkpoints = await _chained(api, clock)
    everything = [json.loads(line) for line in lines[:-1]]
    start = first["accepted_at"]
    period = await api.client.get(
        "/audit/export", params={"from": start}, headers=api.headers("regulator")
    )
    period_lines = period.content.splitlines(keepends=True)
    verdict = verify(period_lines, checkpoints, key=pinned_key())
    assert verdict.valid, verdict.message
    got = [json.loads(line)["position"] for line in period_lines[:-1]]
    since = datetime.fromisoformat(start)
    first_at = min(r["position"] for r in everything if datetime.fromisoformat(r["at"]) >= since)
    assert any(
        datetime.fromisoformat(r["at"]) < since for r in everything if r["position"] > first_at
    )
    assert got == [r["position"] for r in everything if r["position"] >= first_at]


@pytest.mark.parametrize(
    "params",
    [
        {"from": "0001-01-01T00:00:00+05:00"},
        {"to": "9999-12-31T23:59:59-05:00"},
        {"from": "yesterday"},
        {"from": "2026-11-01T00:00:00"},
    ],
)
async def test_bad_export_periods_are_422(api: Api, params: dict[str, str]) -> None:
    response = await api.client.get(
        "/audit/export", params=params, headers=api.headers("regulator")
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
