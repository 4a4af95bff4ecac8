"""The KEK file: made by setup in development only, mode 600; a missing or malformed one stops
the service with a message that says what to do. A store from before the key store (customer
keys in plaintext) is upgraded by setup: its keys are wrapped and no plaintext key is left."""

from __future__ import annotations

import asyncio
import fcntl
import os
import secrets
import sqlite3
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from anyio import to_thread
from sqlalchemy import inspect, text

from shared.cli.setup_store import setup
from shared.domain.policy import Policy
from shared.readmodel.migrate import upgrade
from shared.settings import Settings
from shared.store import keystore
from shared.store.application import ComplaintsApplication
from shared.store.facade import ComplaintStore
from shared.store.keystore import Kek, KekFile, KekFileError
from tests.conftest import make_settings
from tests.postgres import create_database, drop_database


def test_setup_makes_a_kek_file_in_development_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    production = make_settings(url, kek_path=tmp_path / "prod" / "keks", environment="production")
    with pytest.raises(KekFileError, match=r"python -m shared.cli.kek create"):
        asyncio.run(setup(production))
    development = production.model_copy(update={"environment": "development"})
    asyncio.run(setup(development))
    path = development.kek_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(KekFile(path).keks) == 1
    asyncio.run(setup(development))  # again: the same KEK
    assert len(KekFile(path).keks) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no key-encryption key"),
        ("abc 2026-01-01T00:00:00Z\n", "expected `<id> <created at> <key, base64>"),
        ("abc 2026-01-01T00:00:00Z not-base64!\n", "line 1"),
        ("abc 2026-01-01T00:00:00Z AAAA\n", "a KEK is 32 bytes"),
        (
            f"0123456789abcdef 2026-01-01T00:00:00Z {'A' * 43}=\n",
            "does not match its id",
        ),
    ],
)
async def test_a_malformed_kek_file_stops_the_store_with_a_clear_message(
    settings: Settings, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad-keks"
    path.write_text(content)
    store = ComplaintStore(settings.model_copy(update={"kek_path": path}))
    try:
        with pytest.raises(KekFileError, match=message) as raised:
            await store.open()
        assert str(path) in str(raised.value)
    finally:
        await store.close()


async def test_a_missing_kek_file_stops_the_store(settings: Settings, tmp_path: Path) -> None:
    store = ComplaintStore(settings.model_copy(update={"kek_path": tmp_path / "none"}))
    try:
        with pytest.raises(KekFileError, match="COMPLAINTS_KEK_PATH"):
            await store.open()
    finally:
        await store.close()


@pytest.fixture
def empty_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[str, Path]:
    """A database with no tables yet, and a KEK file of its own."""
    kek_path = tmp_path / "keks"
    KekFile.load(kek_path, create=True)
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'old.sqlite3'}", kek_path
    admin = request.getfixturevalue("postgres_admin_url")
    url = create_database(admin)
    request.addfinalizer(lambda: drop_database(admin, url))
    return url, kek_path


async def test_setup_wraps_the_plaintext_keys_of_an_older_store(
    empty_database: tuple[str, Path],
) -> None:
    url, kek_path = empty_database
    settings = make_settings(url, kek_path=kek_path)
    keks = KekFile(kek_path)
    # A store as revision 0013 left it: customer keys in plaintext.
    app = ComplaintsApplication(settings, Policy.load(), keks, create_table=True)
    app.close()
    older = ComplaintStore(settings)
    try:
        await upgrade(older.engine, revision="0013")
        plain = {f"cust-{n}": (secrets.token_bytes(32), secrets.token_hex(16)) for n in range(20)}
        async with older.engine.begin() as conn:
            for n, (customer, (secret, salt)) in enumerate(plain.items()):
                await conn.execute(
                    text(
                        "INSERT INTO customer_keys (key_id, customer_id, secret, salt, "
                        "created_at) VALUES (:k, :c, :s, :salt, :at)"
                    ),
                    {"k": f"key{n:04d}", "c": customer, "s": secret, "salt": salt, "at": 1.0},
                )
    finally:
        await older.close()

    await setup(settings)

    store = ComplaintStore(settings)
    await store.open()
    try:
        for n, (customer, (secret, salt)) in enumerate(plain.items()):
            key = await to_thread.run_sync(store.app.keystore.get, f"key{n:04d}")
            assert key is not None
            assert (key.customer_id, key.secret, key.salt) == (customer, secret, salt)
        assert await to_thread.run_sync(store.app.keystore.kek_ids) == {keks.current.id}
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert "customer_keys" not in tables
    finally:
        await store.close()
    if not settings.is_postgres:  # the raw file: no plaintext key, in pages free or used
        assert settings.url.database
        database = Path(settings.url.database)
        raw = b"".join(
            p.read_bytes()
            for p in (database, database.with_name(database.name + "-wal"))
            if p.exists()
        )
        for secret, salt in plain.values():
            assert secret not in raw and salt.encode() not in raw


@pytest.mark.parametrize("change", ["add", "remove"])
def test_a_change_of_the_kek_file_keeps_a_kek_added_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Two processes change the file at once (a rotation and a purge, or two rotations): each
    reads it, changes it and writes it back. The other's KEK, added between one's read and its
    write, must survive; so the other waits for the lock until this change is written."""
    path = tmp_path / "keks"
    first = KekFile.load(path, create=True, now=datetime(2026, 1, 1, tzinfo=UTC))
    old = first.current
    first.add(datetime(2026, 2, 1, tzinfo=UTC))
    ours, other = KekFile(path), KekFile(path)  # one per process; ours has read the file
    write, waiting, theirs = keystore._write, [], []

    def write_with_a_rival(target: Path, keks: list[Kek], **kwargs: Any) -> None:
        """Between our read and our write, the other process adds a KEK if the lock lets it."""
        if threading.current_thread() is threading.main_thread() and not waiting:
            rival = threading.Thread(
                target=lambda: theirs.append(other.add(datetime(2026, 3, 2, tzinfo=UTC)))
            )
            waiting.append(rival)
            if _lock_is_free(path):
                rival.run()  # it gets in now: its write lands before ours
            else:
                rival.start()  # it waits for our lock
        write(target, keks, **kwargs)

    monkeypatch.setattr(keystore, "_write", write_with_a_rival)
    if change == "add":
        added = ours.add(datetime(2026, 3, 1, tzinfo=UTC))
    else:
        ours.remove([old.id])
    if waiting[0].ident is not None:
        waiting[0].join()

    kept = [k.id for k in KekFile(path).keks]
    assert theirs[0].id in kept  # the rival's KEK, which its rotation re-wraps keys under
    if change == "add":
        assert added.id in kept and len(kept) == 4
    else:
        assert old.id not in kept and len(kept) == 2
    assert stat.S_IMODE(keystore.lock_path(path).stat().st_mode) == 0o600


def _lock_is_free(path: Path) -> bool:
    """Whether another process could take the KEK file's lock now."""
    fd = os.open(path.with_name(f"{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_the_schema_check_waits_for_the_setup_step(tmp_path: Path) -> None:
    """`setup_store --check` (the Kubernetes services' init container) is ready only once
    the setup step has run, and changes nothing itself."""
    from shared.cli.setup_store import schema_ready

    settings = make_settings(f"sqlite:///{tmp_path / 'store.sqlite3'}", environment="development")
    assert asyncio.run(schema_ready(settings)) is False
    assert asyncio.run(schema_ready(settings)) is False  # the check made no tables
    asyncio.run(setup(settings))
    assert asyncio.run(schema_ready(settings)) is True
    # A later release's setup step has run (a revision this code does not know): an old pod
    # (a rollback, a restart mid-rollout) starts rather than waiting for ever.
    database = sqlite3.connect(tmp_path / "store.sqlite3")
    with database:
        database.execute("UPDATE alembic_version SET version_num = 'f00d_of_a_later_release'")
    database.close()
    assert asyncio.run(schema_ready(settings)) is True
