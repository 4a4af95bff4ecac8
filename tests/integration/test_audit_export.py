"""The export reads like every other read: masked for the roles that see personal data masked,
and never silently short of what was committed before its period ended."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text

from services.intake.main import create_app
from shared.audit.chain import ChainProjection
from shared.audit.checkpoints import load_key
from shared.audit.tables import audit_chain
from shared.audit.verify import LEGACY_TRAILER_KEYS, digest, trailer_message, verify
from shared.cli.rebuild import rebuild
from shared.domain.clock import FixedClock
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import AUDIT_KEY, TokenFactory, intake_body, pinned_key
from tests.integration.conftest import (
    Api,
    catch_up,
    serving,
    undo_after_list_filters,
    undo_list_filters,
)
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


async def _chain_as_stored(store: ComplaintStore, settings: Settings) -> bytes:
    """The audit chain as it lies on disk: the SQLite files (every table), or the chain
    table's rows, every value as PostgreSQL returns it."""
    if not settings.is_postgres:
        path = Path(str(settings.url.database))
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    async with store.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT audit_chain::text FROM audit_chain"))).all()
    return "\n".join(row[0] for row in rows).encode()


async def _computed(api: Api, store: ComplaintStore) -> list[bytes]:
    """The masked export as computed from the events (no stored line: as for rows chained
    before the chain kept them)."""
    async with store.engine.begin() as conn:
        await conn.execute(audit_chain.update().values(masked_line=None))
    return await _export(api, "regulator")


async def _rebuilt(api: Api, settings: Settings) -> list[bytes]:
    """The masked export once `make rebuild` has chained every event anew."""
    await rebuild(settings, [ChainProjection.name], progress=False)
    return await _export(api, "regulator")


async def test_the_masked_export_streams_stored_lines_as_it_would_compute_them(
    api: Api, store: ComplaintStore, settings: Settings
) -> None:
    """The chain keeps each event's masked line, without personal data; the export streams it,
    and computes the lines of rows chained before the chain kept them (revision 0019)."""
    from alembic import command as alembic

    from shared.cli.setup_store import setup
    from shared.readmodel.migrate import alembic_config

    body = intake_body(customer=CUSTOMER, description=DESCRIPTION, service_number=CUSTOMER["phone"])
    assert (await api.accept(body)).status_code == 201
    await _signed_head(api)
    before_upgrade = await _export(api, "regulator")
    # The store as revision 0018 left it: the chain without its masked lines.
    async with store.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit_chain DROP COLUMN masked_line"))
        await undo_list_filters(conn)  # (0021's)
        await undo_after_list_filters(conn)
        await conn.run_sync(lambda sync: alembic.stamp(alembic_config(sync), "0018"))
    await store.engine.dispose()
    await setup(settings)
    async with store.engine.connect() as conn:
        assert set((await conn.execute(select(audit_chain.c.masked_line))).scalars()) == {None}
    assert await _export(api, "regulator") == before_upgrade

    # Rows chained after the upgrade keep their line; those from before are computed.
    assert (await api.accept(intake_body())).status_code == 201
    await _signed_head(api)
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(audit_chain.c.masked_line))).scalars().all()
    assert None in stored and any(line is not None for line in stored)
    mixed = await _export(api, "regulator")
    assert mixed[: len(before_upgrade) - 1] == before_upgrade[:-1]
    checkpoints = (await api.get("/audit/checkpoints", role="regulator")).json()
    verdict = verify(mixed, checkpoints, key=pinned_key())
    assert verdict.valid, verdict.message
    assert await _computed(api, store) == mixed  # byte for byte, trailer included
    assert await _rebuilt(api, settings) == mixed
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(audit_chain.c.masked_line))).scalars().all()
    assert None not in stored

    # The stored lines hold the digests the chain committed to, never the plaintext.
    plain = [json.loads(line) for line in (await _export(api, "admin"))[:-1]]
    salt = next(line["salt"] for line in plain if line["type"].endswith("Accepted"))
    on_disk = await _chain_as_stored(store, settings)
    assert digest(salt, CUSTOMER["phone"]).encode() in on_disk
    for value in PLAINTEXT:
        assert value.encode() not in on_disk, value


async def test_an_erasure_leaves_the_masked_export_as_it_was(
    api: Api, store: ComplaintStore, settings: Settings
) -> None:
    body = intake_body(customer=CUSTOMER, description=DESCRIPTION, service_number=CUSTOMER["phone"])
    assert (await api.accept(body)).status_code == 201
    await _signed_head(api)
    before = await _export(api, "regulator")
    erased = await api.client.post(
        f"/customers/{CUSTOMER['id']}/erasure", headers=api.headers("admin")
    )
    assert erased.status_code == 200, erased.text
    await _signed_head(api)
    after = await _export(api, "regulator")
    assert json.loads(after[-2])["type"] == "PersonalDataErased"
    assert after[: len(before) - 1] == before[:-1]  # every line before the erasure, unchanged
    checkpoints = (await api.get("/audit/checkpoints", role="regulator")).json()
    verdict = verify(after, checkpoints, key=pinned_key())
    assert verdict.valid, verdict.message
    # The lines computed from the erased events, and a rebuilt chain's, are the same.
    assert await _computed(api, store) == after
    assert await _rebuilt(api, settings) == after
    on_disk = await _chain_as_stored(store, settings)
    for value in PLAINTEXT:
        assert value.encode() not in on_disk, value
