"""A KEK rotation without a window, where each host has its own copy of the KEK file (Kubernetes
pods, each with the Secret as synced to it): the new KEK is staged first, held by every copy
but wrapping nothing, and is put in force only once every running process reports holding it,
so no process ever meets a key wrapped by a KEK it lacks. `maintain`, run daily, walks a KEK's
life on its own: staged when due, in force once held everywhere, destroyed after the
retention."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import select

from services.intake.main import create_app
from shared.cli.kek import command as kek_command
from shared.domain.clock import FixedClock
from shared.settings import Settings
from shared.store import kek_holders
from shared.store.facade import ComplaintStore
from shared.store.keystore import Kek, KekFile, KekFileError, KekNotHeld
from shared.store.lease import holder_name
from shared.store.tables import kek_holders as holders_table
from shared.store.tables import wrapped_keys
from tests.conftest import TokenFactory, make_settings
from tests.integration.conftest import Api, serving
from tests.integration.test_erasure import SECRETS, _body
from tests.integration.test_key_store import _description, _opened
from tests.integration.test_metrics import scrape, value


@pytest.fixture
def kek_path(tmp_path: Path) -> Path:
    """The KEK file as the operator and the service under test have it (pod A's copy)."""
    path = tmp_path / "keks" / "key-encryption-keys"
    KekFile.load(path, create=True)
    return path


@pytest.fixture
def settings(database_url: str, kek_path: Path) -> Settings:
    return make_settings(database_url, kek_path=kek_path)


def _store(api: Api) -> ComplaintStore:
    store: ComplaintStore = api.client._transport.app.state.store  # type: ignore[attr-defined]
    return store


async def _wrapping_keks(store: ComplaintStore) -> set[str]:
    """The KEKs the key store's rows are wrapped by."""
    async with store.engine.connect() as conn:
        return set((await conn.execute(select(wrapped_keys.c.kek_id))).scalars())


async def test_a_staged_kek_is_put_in_force_only_once_every_process_holds_it(
    api: Api, settings: Settings, kek_path: Path, tmp_path: Path, clock: FixedClock
) -> None:
    store = _store(api)
    pod_a = holder_name(api.client._transport.app)  # type: ignore[attr-defined]
    # Pod B: another process with its own copy of the KEK file, as its Secret volume has it.
    b_path = tmp_path / "pod-b" / kek_path.name
    b_path.parent.mkdir()
    shutil.copy2(kek_path, b_path)
    old = KekFile(kek_path).current
    first = (await api.accept(_body("cust-stage-1"))).json()["id"]

    staged = await kek_command(settings, "stage", store)
    new = KekFile(kek_path).staged
    assert new is not None and new.id in staged and KekFile(kek_path).current.id == old.id
    # Staged, it wraps nothing: a new customer's key is still wrapped by the KEK in force.
    second = (await api.accept(_body("cust-stage-2"))).json()["id"]
    assert await _wrapping_keks(store) == {old.id}

    async with _opened(settings.model_copy(update={"kek_path": b_path})) as pod_b:
        await store.report_keks(pod_a)
        await pod_b.report_keks("pod-b")
        # A process last heard from long ago (it died) does not hold the rotation back.
        await kek_holders.report(
            store.engine, "pod-gone", [old.id], (clock() - timedelta(hours=1)).timestamp()
        )

        # Pod B has not got the staged KEK yet: the rotation refuses, naming it, and changes
        # nothing.
        with pytest.raises(KekNotHeld, match="1 running process") as refused:
            await kek_command(settings, "rotate", store)
        assert "pod-b" in str(refused.value) and pod_a not in str(refused.value)
        assert "pod-gone" not in str(refused.value)
        assert KekFile(kek_path).staged == new and await _wrapping_keks(store) == {old.id}
        waited = await kek_command(settings, "maintain", store)
        assert waited.startswith("not yet: ") and "pod-b" in waited
        assert KekFile(kek_path).staged == new

        # Pod B's Secret is synced: it holds the staged KEK (still staged in its copy).
        shutil.copy2(kek_path, b_path)
        await pod_b.report_keks("pod-b")
        rotated = await kek_command(settings, "rotate", store)
        assert rotated == f"rotated to KEK {new.id}: 2 customer key(s) re-wrapped"
        assert KekFile(kek_path).current.id == new.id and KekFile(kek_path).staged is None
        assert await _wrapping_keks(store) == {new.id}

        # No window: pod B, whose copy still has the new KEK staged, reads every complaint,
        # its keys now wrapped by that KEK.
        assert KekFile(b_path).staged == new
        for cid in (first, second):
            assert _description(await pod_b.get(UUID(cid))) == SECRETS["description"]
    # And pod A, which wrote the file, reads them through the API.
    for cid in (first, second):
        shown = (await api.get(f"/complaints/{cid}")).json()
        assert shown["description"] == SECRETS["description"]


async def test_maintain_stages_when_due_puts_in_force_then_destroys_after_the_retention(
    store: ComplaintStore, settings: Settings, kek_path: Path, clock: FixedClock
) -> None:
    first = KekFile(kek_path).current
    clock.now = first.created_at + timedelta(days=89)
    said = await kek_command(settings, "maintain", store)
    assert said.splitlines()[0] == (
        f"KEK {first.id} stays in force; the next is staged from "
        f"{first.created_at + timedelta(days=90):%Y-%m-%d}"
    )
    assert KekFile(kek_path).staged is None

    clock.advance(timedelta(days=1))
    said = await kek_command(settings, "maintain", store)
    staged = KekFile(kek_path).staged
    assert staged is not None and said.startswith(f"staged KEK {staged.id}")
    assert KekFile(kek_path).current.id == first.id

    clock.advance(timedelta(days=1))  # the next day: no process lacks it (none runs here)
    said = await kek_command(settings, "maintain", store)
    assert said.splitlines() == [
        f"rotated to KEK {staged.id}: 0 customer key(s) re-wrapped",
        "destroyed 0 KEK(s)",
    ]
    keks = KekFile(kek_path)
    assert keks.current.id == staged.id and keks.current.created_at == clock()
    status = await kek_command(settings, "status", store)
    retired = first.id + f"  since {first.created_at:%Y-%m-%d}  superseded {clock():%Y-%m-%d}"
    assert retired in status

    clock.advance(timedelta(days=settings.kek_retention_days))
    said = await kek_command(settings, "maintain", store)
    assert said.splitlines()[-1] == f"destroyed 1 KEK(s) {first.id}"
    assert [k.id for k in KekFile(kek_path).keks] == [staged.id]


async def test_every_service_process_reports_the_keks_it_holds_while_it_runs(
    settings: Settings, clock: FixedClock, token: TokenFactory, kek_path: Path
) -> None:
    app = create_app(settings, clock=clock)
    async with serving(app, token) as api:
        store = _store(api)

        async def rows() -> list[tuple[str, list[str]]]:
            async with store.engine.connect() as conn:
                found = await conn.execute(select(holders_table.c.holder, holders_table.c.kek_ids))
                return [(row.holder, list(row.kek_ids)) for row in found]

        for _ in range(100):  # the first report is made as the process starts
            if await rows():
                break
            await asyncio.sleep(0.05)
        assert await rows() == [(holder_name(app), [KekFile(kek_path).current.id])]
        engine = store.engine
    # Stopped, it holds nothing any more.
    async with engine.connect() as conn:
        assert (await conn.execute(select(holders_table))).all() == []
    await engine.dispose()


def test_only_the_last_kek_of_the_file_may_be_staged(tmp_path: Path, clock: FixedClock) -> None:
    path = tmp_path / "keks"
    staged = Kek.new(clock(), staged=True)
    path.write_text(staged.line())
    with pytest.raises(KekFileError, match="holds no key-encryption key in force"):
        KekFile(path)
    path.write_text(staged.line() + Kek.new(clock()).line())
    with pytest.raises(KekFileError, match="only its last KEK may be staged"):
        KekFile(path)
    path.write_text(Kek.new(clock()).line() + staged.line())
    keks = KekFile(path)
    assert keks.staged == staged and keks.current != staged
    assert keks.stage(clock()) == (staged, False)  # staged again: the same one


async def test_the_kek_file_as_a_kubernetes_secret(settings: Settings, kek_path: Path) -> None:
    manifest = json.loads(await kek_command(settings, "secret", secret_name="complaints-kek"))
    assert manifest["kind"] == "Secret" and manifest["metadata"] == {"name": "complaints-kek"}
    assert list(manifest["data"]) == [kek_path.name]
    held = await asyncio.to_thread(kek_path.read_bytes)
    assert base64.b64decode(manifest["data"][kek_path.name]) == held


async def test_metrics_say_how_far_past_its_rotation_the_kek_is_and_how_long_one_is_staged(
    api: Api, settings: Settings, kek_path: Path, clock: FixedClock
) -> None:
    current = KekFile(kek_path).current
    clock.now = current.created_at + timedelta(days=settings.kek_rotation_days)
    assert value(await scrape(api), "complaints_kek_rotation_overdue_seconds") == 0
    clock.advance(timedelta(hours=5))
    assert value(await scrape(api), "complaints_kek_rotation_overdue_seconds") == 5 * 3600
    assert value(await scrape(api), "complaints_kek_staged_seconds") == 0
    await kek_command(settings, "stage", _store(api))
    clock.advance(timedelta(hours=2))
    assert value(await scrape(api), "complaints_kek_staged_seconds") == 2 * 3600
