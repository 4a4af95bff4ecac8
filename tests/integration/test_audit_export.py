"""The export reads like every other read: masked for the roles that see personal data masked,
and never silently short of what was committed before its period ended."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.intake.main import create_app
from shared.audit.chain import ChainProjection
from shared.audit.checkpoints import load_key
from shared.audit.verify import LEGACY_TRAILER_KEYS, trailer_message, verify
from shared.domain.clock import FixedClock
from shared.settings import Settings
from tests.conftest import AUDIT_KEY, TokenFactory, intake_body, pinned_key
from tests.integration.conftest import Api, catch_up, serving
from tests.integration.test_audit import _signed_head

CUSTOMER = {"id": "c-77", "name": "欧阳娜娜", "phone": "13977776666", "email": "nana@example.cn"}
DESCRIPTION = "宽带每晚断线,客服说会回电但没有。"
PLAINTEXT = [CUSTOMER["name"], CUSTOMER["phone"], CUSTOMER["email"], DESCRIPTION]


async def _export(api: Api, role: str, **params: str) -> list[bytes]:
    answer = await api.client.get("/audit/export", params=params, headers=api.headers(role))
    assert answer.status_code == 200, answer.text
    return answer.content.splitlines(keepends=True)


async def test_a_masked_role_reads_digests_and_the_chain_still_verifies(api: Api) -> None:
    body = intake_body(customer=CUSTOMER, description=DESCRIPTION, service_number=CUSTOMER["phone"])
    accepted = await api.accept(body)
    assert accepted.status_code == 201
    await _signed_head(api)
    checkpoints = (await api.get("/audit/checkpoints", role="regulator")).json()
    plain = await _export(api, "admin")  # admin, like agent and callback, reads plaintext
    text = b"".join(plain).decode()
    assert all(value in text for value in PLAINTEXT)
    for role in ("regulator", "analyst"):
        lines = await _export(api, role)
        text = b"".join(lines).decode()
        for value in PLAINTEXT:
            assert value not in text, (role, value)
        records = [json.loads(line) for line in lines[:-1]]
        assert all(record["salt"] is None for record in records)
        customer = next(r for r in records if r["type"].endswith("Accepted"))["data"]["intake"][
            "customer"
        ]
        assert set(customer["phone"]) == {"sha256"}
        # The same chain, hash for hash, as the plaintext export.
        assert [r["hash"] for r in records] == [json.loads(line)["hash"] for line in plain[:-1]]
        verdict = verify(lines, checkpoints, key=pinned_key())
        assert verdict.valid, verdict.message
    assert verify(plain, checkpoints, key=pinned_key()).valid


def _waiting(settings: Settings, seconds: float) -> Settings:
    """No projector of its own: the test moves the chain, so what the export sees is certain."""
    return settings.model_copy(
        update={"projector_enabled": False, "audit_export_wait_seconds": seconds}
    )


async def test_an_export_right_after_a_write_holds_it(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    app = create_app(_waiting(settings, 30), clock=clock)
    async with serving(app, token) as api:
        written = (await api.accept(intake_body())).json()
        asked = asyncio.ensure_future(
            api.client.get(
                "/audit/export",
                params={"to": "2027-01-01T00:00:00+00:00"},
                headers=api.headers("regulator"),
            )
        )
        # Whether the request reads the store's head before or after the chain moves, it
        # waits (up to 30 s) until the chain holds the write.
        await catch_up(app.state.store, ChainProjection())
        answer = await asked
    assert answer.status_code == 200, answer.text
    lines = answer.content.splitlines(keepends=True)
    positions = [json.loads(line)["position"] for line in lines[:-1]]
    assert written["position"] in positions
    trailer = json.loads(lines[-1])["trailer"]
    assert trailer["complete"] is True
    assert trailer["last_position"] == positions[-1] >= written["position"]
    verdict = verify(lines, {"checkpoints": []}, key=pinned_key())
    assert verdict.valid, verdict.message
    assert any(note.startswith("complete: ") for note in verdict.notes)


async def test_an_export_the_chain_has_not_caught_up_with_is_503(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    app = create_app(_waiting(settings, 0), clock=clock)
    async with serving(app, token) as api:
        await api.accept(intake_body())
        refused = await api.get("/audit/export", role="regulator")
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["Retry-After"]) >= 1
        assert "Retry" in refused.json()["detail"]
        await catch_up(app.state.store, ChainProjection())
        assert (await api.get("/audit/export", role="regulator")).status_code == 200


def _resigned(lines: list[bytes], **changes: Any) -> list[bytes]:
    trailer = {**json.loads(lines[-1])["trailer"], **changes}
    trailer = {k: v for k, v in trailer.items() if v is not _DROP}
    key: Ed25519PrivateKey = load_key(AUDIT_KEY, create=False)
    trailer["signature"] = base64.b64encode(key.sign(trailer_message(trailer))).decode()
    return [*lines[:-1], (json.dumps({"trailer": trailer}) + "\n").encode()]


_DROP = object()


async def test_the_verifier_reads_the_trailer_s_completeness(api: Api) -> None:
    await api.accept(intake_body())
    await _signed_head(api)
    lines = await _export(api, "regulator")
    checkpoints = (await api.get("/audit/checkpoints", role="regulator")).json()
    incomplete = verify(_resigned(lines, complete=False), checkpoints, key=pinned_key())
    assert not incomplete.valid
    assert incomplete.message.startswith("incomplete: ")
    moved = verify(_resigned(lines, last_position=1), checkpoints, key=pinned_key())
    assert not moved.valid and "last position" in moved.message
    # An export made before trailers stated completeness still verifies, and says so.
    legacy = _resigned(lines, complete=_DROP, last_position=_DROP)
    assert set(json.loads(legacy[-1])["trailer"]) == LEGACY_TRAILER_KEYS
    verdict = verify(legacy, checkpoints, key=pinned_key())
    assert verdict.valid, verdict.message
    assert any("does not say whether" in note for note in verdict.notes)
