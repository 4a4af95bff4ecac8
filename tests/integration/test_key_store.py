"""Customer keys live wrapped by a key-encryption key (KEK) kept outside the database. Erasure
leaves neither the key nor the plaintext in the raw database files; a backup taken before an
erasure stops yielding the data once the KEK it was wrapped with is destroyed; a crash in the
middle of an erasure or a rotation leaves a state that a retry completes."""

from __future__ import annotations

import glob
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from anyio import to_thread
from sqlalchemy import func, select

from shared.cli.kek import command as kek_command
from shared.domain.clock import FixedClock
from shared.domain.complaint import Complaint
from shared.domain.personal import ERASED_TEXT, text_of
from shared.settings import Settings
from shared.store import keystore
from shared.store.facade import ComplaintStore
from shared.store.keystore import CustomerKey, Kek, KekFile, KekMissing
from shared.store.lease import holder_name
from shared.store.tables import idempotency_keys
from tests.conftest import make_settings
from tests.integration.conftest import Api
from tests.integration.test_erasure import CUSTOMER, SECRETS, _archived_complaint, _body
from tests.integration.test_kek_file import _lock_is_free
from tests.postgres import create_database, drop_database

OTHERS = ["cust-keep-a", "cust-keep-b", "cust-keep-c"]


@pytest.fixture
def kek_path(tmp_path: Path) -> Path:
    """A KEK file of this test's own (the store it opens holds no key yet)."""
    path = tmp_path / "keks" / "key-encryption-keys"
    KekFile.load(path, create=True)
    return path


@pytest.fixture
def settings(database_url: str, kek_path: Path) -> Settings:
    return make_settings(database_url, snapshot_interval=3, kek_path=kek_path)


def _description(complaint: Complaint) -> object:
    """The complaint's description as shown (a complaint read from the store keeps it sealed)."""
    return text_of(complaint.intake["description"])


def _store(api: Api) -> ComplaintStore:
    store: ComplaintStore = api.client._transport.app.state.store  # type: ignore[attr-defined]
    return store


async def _key_of(store: ComplaintStore, complaint_id: str) -> tuple[CustomerKey, bytes]:
    """The complaint's customer key, and that key as the key store holds it (wrapped)."""
    keys = store.app.keystore
    key_id = await to_thread.run_sync(keys.bound_key_id, complaint_id)
    assert key_id is not None
    key = await to_thread.run_sync(keys.get, key_id)
    assert key is not None
    async with store.engine.connect() as conn:
        wrapped = (
            await conn.exec_driver_sql(
                "SELECT wrapped FROM wrapped_keys WHERE key_id = ?"
                if not store.settings.is_postgres
                else "SELECT wrapped FROM wrapped_keys WHERE key_id = $1",
                (key_id,),
            )
        ).scalar_one()
    return key, bytes(wrapped)


def _raw(database: Path) -> bytes:
    """The database as it lies on disk: the main file (free pages included) and its WAL."""
    return b"".join(
        path.read_bytes()
        for path in (database, database.with_name(database.name + "-wal"))
        if path.exists()
    )


def _leaks(raw: bytes, key: CustomerKey, wrapped: bytes) -> list[str]:
    """What of the customer's key or personal data the bytes hold."""
    found = [field for field, value in SECRETS.items() if value.encode() in raw]
    for what, value in {
        "key": key.secret,
        "salt": bytes.fromhex(key.salt),
        "salt (hex)": key.salt.encode(),
        "wrapped key": wrapped,
    }.items():
        if value in raw:
            found.append(what)
    return found


def _database_file(settings: Settings) -> Path:
    assert settings.url.database
    return Path(settings.url.database)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_after_an_erasure_the_raw_files_hold_neither_the_key_nor_the_data(
    api: Api, inv: Api, cb: Api, settings: Settings
) -> None:
    store = _store(api)
    for other in OTHERS:  # keys on the same pages as the erased one
        assert (await api.accept(_body(other))).status_code == 201
    cid = await _archived_complaint(api, inv, cb)
    key, wrapped = await _key_of(store, cid)
    database = _database_file(settings)
    assert "wrapped key" in _leaks(_raw(database), key, wrapped)  # the scan sees it
    assert key.secret not in _raw(database)  # never stored unwrapped

    erased = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers("admin"))
    assert erased.status_code == 200 and erased.json()["keys_destroyed"] == 1

    assert _leaks(_raw(database), key, wrapped) == []
    assert (await api.get(f"/complaints/{cid}")).json()["description"] == ERASED_TEXT


async def test_a_backup_yields_the_data_until_its_kek_is_destroyed(
    api: Api, settings: Settings, clock: FixedClock, backup_of: Callable[[Settings], Settings]
) -> None:
    store = _store(api)
    cid = (await api.accept(_body(), **{"Idempotency-Key": "backup-1"})).json()["id"]
    kept = (await api.accept(_body("cust-keep-a"))).json()["id"]
    backup = backup_of(settings)

    erased = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers("admin"))
    assert erased.json()["keys_destroyed"] == 1

    # While the KEK that wrapped it lives, the backup still yields the erased customer's data.
    async with _opened(backup) as restored:
        assert _description(await restored.get(UUID(cid))) == SECRETS["description"]

    kek, rewrapped, finished = await store.rotate_kek()
    assert (rewrapped, finished) == (1, False)  # the kept customer's key; the erased one is gone
    assert await store.purge_keks() == []  # kept for the retention (30 days)
    clock.advance(timedelta(days=29))
    assert await store.purge_keks() == []
    async with _opened(backup) as restored:  # still: the old KEK is kept
        assert _description(await restored.get(UUID(cid))) == SECRETS["description"]

    clock.advance(timedelta(days=1))
    # (the service process's next report: the new KEK in force, the old one no longer)
    await store.report_keks(holder_name(api.client._transport.app))  # type: ignore[attr-defined]
    destroyed = await store.purge_keks()
    assert len(destroyed) == 1 and destroyed[0].id != kek.id
    assert [k.id for k in KekFile(settings.kek_path).keks] == [kek.id]

    # The backup yields nothing any more: its keys were wrapped by the destroyed KEK.
    with pytest.raises(KekMissing, match="destroyed"):
        async with _opened(backup):
            pass
    # The live store reads on, its keys re-wrapped under the new KEK.
    assert (await api.get(f"/complaints/{kept}")).json()["description"] == SECRETS["description"]
    assert (await api.get(f"/complaints/{cid}")).json()["description"] == ERASED_TEXT
    # And so does a store process started afresh.
    async with _opened(settings) as fresh:
        assert _description(await fresh.get(UUID(kept))) == SECRETS["description"]


@pytest.fixture
def backup_of(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[Settings], Settings]]:
    """Takes a backup of a store as it is now: a copy of its files (SQLite), or a dump
    restored into a database of its own (PostgreSQL). Gives the settings to open it with."""
    restored: list[str] = []

    def backup(settings: Settings) -> Settings:
        if settings.is_postgres:
            admin = request.getfixturevalue("postgres_admin_url")
            dump = tmp_path / "backup.dump"
            dsn = settings.url.render_as_string(hide_password=False)
            subprocess.run([_tool("pg_dump"), "-Fc", "-f", str(dump), dsn], check=True)
            copy = create_database(admin)
            restored.append(copy)
            subprocess.run([_tool("pg_restore"), "--no-owner", "-d", copy, str(dump)], check=True)
            return settings.model_copy(update={"database_url": copy, "projector_enabled": False})
        database = _database_file(settings)
        target = tmp_path / "backup"
        target.mkdir()
        for suffix in ("", "-wal"):
            source = database.with_name(database.name + suffix)
            if source.exists():
                shutil.copyfile(source, target / (database.name + suffix))
        url = f"sqlite:///{target / database.name}"
        return settings.model_copy(update={"database_url": url, "projector_enabled": False})

    yield backup
    for url in restored:
        drop_database(request.getfixturevalue("postgres_admin_url"), url)


def _tool(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        pytest.fail(f"{name} is needed to back up a PostgreSQL store: install postgresql-client")
    return found


class _opened:
    """A store opened on other settings (a restored backup, a fresh process)."""

    def __init__(self, settings: Settings) -> None:
        self.store = ComplaintStore(settings)

    async def __aenter__(self) -> ComplaintStore:
        try:
            await self.store.open()
        except BaseException:
            await self.store.close()
            raise
        return self.store

    async def __aexit__(self, *_: Any) -> None:
        await self.store.close()


@pytest.mark.parametrize("step", ["forget the stored answers", "scrub"])
async def test_an_erasure_that_failed_half_way_is_finished_by_a_retry(
    api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """The key is destroyed and the erasure recorded; then the process fails before the
    stored answers are forgotten, or before the database is scrubbed. A retry finishes it."""
    store = _store(api)
    cid = (await api.accept(_body(), **{"Idempotency-Key": "erase-me"})).json()["id"]
    key, wrapped = await _key_of(store, cid)

    def crash(*_: Any) -> None:
        raise OSError("the disk went away")

    if step == "scrub":
        monkeypatch.setattr(store.app.keystore, "scrub", crash)
    else:
        monkeypatch.setattr(store.idempotency, "forget_complaints", crash)
    failed = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers("admin"))
    assert failed.status_code == 500
    monkeypatch.undo()

    retried = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers("admin"))
    assert retried.status_code == 200
    assert retried.json()["keys_destroyed"] == 0 and retried.json()["complaints"] == [cid]
    assert (await api.get(f"/complaints/{cid}")).json()["description"] == ERASED_TEXT
    async with store.engine.connect() as conn:  # the stored answer is forgotten too
        assert (
            await conn.execute(select(func.count()).select_from(idempotency_keys))
        ).scalar() == 0
    if not settings.is_postgres:
        assert _leaks(_raw(_database_file(settings)), key, wrapped) == []


async def test_a_rotation_that_crashed_half_way_is_finished_by_running_it_again(
    api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(api)
    ids = [(await api.accept(_body(c))).json()["id"] for c in OTHERS]
    keys = store.app.keystore
    first = keys.keks.current
    monkeypatch.setattr(keystore, "REWRAP_BATCH", 1)
    execute, updates = keys._execute, []

    def fails_after_one_rewrap(cursor: Any, sql: str, params: tuple[Any, ...]) -> None:
        if sql.startswith("UPDATE"):
            updates.append(sql)
            if len(updates) == 2:
                raise ConnectionError("the process died")
        execute(cursor, sql, params)

    monkeypatch.setattr(keys, "_execute", fails_after_one_rewrap)
    with pytest.raises(ConnectionError):
        await store.rotate_kek()
    monkeypatch.setattr(keys, "_execute", execute)
    second = keys.keks.current
    assert second.id != first.id
    assert await to_thread.run_sync(keys.kek_ids) == {first.id, second.id}
    # Half-way, every key still opens.
    for cid, customer in zip(ids, OTHERS, strict=True):
        shown = (await api.get(f"/complaints/{cid}")).json()
        assert shown["customer"]["id"] == customer
        assert shown["description"] == SECRETS["description"]

    output = await kek_command(settings, "rotate", store)
    assert output == f"finished the rotation to KEK {second.id}: 2 customer key(s) re-wrapped"
    assert [k.id for k in keys.keks.keks] == [first.id, second.id]  # no third KEK
    assert await to_thread.run_sync(keys.kek_ids) == {second.id}
    for cid in ids:
        assert (await api.get(f"/complaints/{cid}")).json()["description"] == SECRETS["description"]
    # The next rotation is a new one.
    assert (await kek_command(settings, "rotate", store)).startswith("rotated to KEK ")
    assert len(keys.keks.keks) == 3


@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_on_postgresql_the_erasure_vacuums_the_key_table(
    api: Api, settings: Settings
) -> None:
    for other in OTHERS:
        await api.accept(_body(other))
    await api.accept(_body())
    dsn = settings.url.render_as_string(hide_password=False)

    def stats() -> tuple[int, Any]:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT n_dead_tup, last_vacuum FROM pg_stat_user_tables "
                "WHERE relname = 'wrapped_keys'"
            ).fetchone()
        assert row is not None
        return int(row[0]), row[1]

    before = (await to_thread.run_sync(stats))[1]  # the setup step vacuumed it, or nobody
    erased = await api.client.post(f"/customers/{CUSTOMER}/erasure", headers=api.headers("admin"))
    assert erased.json()["keys_destroyed"] == 1
    dead, vacuumed = await to_thread.run_sync(stats)
    assert vacuumed is not None and (before is None or vacuumed > before)
    assert dead == 0


async def test_a_rewrap_under_a_kek_missing_from_the_file_is_refused(
    api: Api, settings: Settings, clock: FixedClock
) -> None:
    """A KEK that is not in the file (e.g. dropped by a concurrent writer) wraps no key: the
    services could never open it again."""
    store = _store(api)
    cid = (await api.accept(_body("cust-keep-a"))).json()["id"]
    keys = store.app.keystore
    before = await to_thread.run_sync(keys.kek_ids)
    stray = Kek.new(clock())

    with pytest.raises(KekMissing, match=f"refusing to re-wrap .* {stray.id}: .* does not hold"):
        await to_thread.run_sync(keys.rewrap, stray)

    assert await to_thread.run_sync(keys.kek_ids) == before
    assert (await api.get(f"/complaints/{cid}")).json()["description"] == SECRETS["description"]


@pytest.mark.parametrize("name", ["rotate", "purge"])
async def test_rotate_and_purge_hold_the_kek_files_lock_throughout(
    api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """So a rotation and a purge (or two rotations) never interleave: while one re-wraps keys,
    another process cannot take the lock."""
    store = _store(api)
    await api.accept(_body("cust-keep-a"))
    keys = store.app.keystore
    rewrap, seen = keys.rewrap, []

    def rewrap_and_look(kek: Kek, **kwargs: Any) -> int:
        seen.append(_lock_is_free(settings.kek_path))
        return rewrap(kek, **kwargs)

    monkeypatch.setattr(keys, "rewrap", rewrap_and_look)
    await kek_command(settings, name, store)
    assert seen == [False]
    assert _lock_is_free(settings.kek_path)  # released when done
