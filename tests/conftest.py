"""Fixtures shared by every tier: settings for each store, tokens, a fixed clock."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.audit.checkpoints import load_key, public_pem
from shared.cli.setup_store import setup
from shared.domain.clock import FixedClock
from shared.domain.policy import Policy
from shared.http.auth import mint_token
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from shared.store.keystore import KekFile
from tests.postgres import NoPostgres, create_database, drop_database, postgres_server

TEST_SECRET = "test-secret-0123456789-0123456789-abcdef"
#: Monday 2026-11-23, 10:00 in Beijing.
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    try:
        with postgres_server() as url:
            yield url
    except NoPostgres as exc:
        pytest.exit(str(exc), returncode=3)


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> Iterator[str]:
    """A database with the schema already created, copied for each test (fast)."""
    url = create_database(postgres_admin_url)
    asyncio.run(create_schema(make_settings(url)))
    yield url.rsplit("/", 1)[1]
    drop_database(postgres_admin_url, url)


async def create_schema(settings: Settings) -> None:
    """The setup step, as `make setup` runs it; the test keys are made whatever the environment."""
    load_key(settings.audit_key_path, create=True)
    KekFile.load(settings.kek_path, create=True)
    await setup(settings)


#: One audit signing key and one KEK file for the whole run (created by the first setup).
AUDIT_KEY = Path(tempfile.mkdtemp(prefix="complaints-test-key-")) / "audit.pem"
KEK_FILE = AUDIT_KEY.parent / "key-encryption-keys"


def pinned_key() -> str:
    """The run's audit signing key as a regulator pins it: the public key, PEM."""
    return public_pem(load_key(AUDIT_KEY, create=False))


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_secret": TEST_SECRET,
        "index_key": "test-index-key-0123456789",
        "audit_key_path": AUDIT_KEY,
        "kek_path": KEK_FILE,
        "projector_poll_seconds": 0.05,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh store with its tables created, on the backend under test."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'complaints.sqlite3'}"
        asyncio.run(create_schema(make_settings(url)))
        yield url
        return
    admin = request.getfixturevalue("postgres_admin_url")
    template = request.getfixturevalue("postgres_template")
    url = create_database(admin, template=template)
    yield url
    drop_database(admin, url)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
async def store(settings: Settings, clock: FixedClock) -> AsyncIterator[ComplaintStore]:
    the_store = ComplaintStore(settings, clock=clock)
    await the_store.open()
    yield the_store
    await the_store.close()


TokenFactory = Callable[..., str]


@pytest.fixture
def token() -> TokenFactory:
    def make(role: str = "agent", sub: str | None = None, roles: list[str] | None = None) -> str:
        settings = make_settings("sqlite:///unused.sqlite3")
        return mint_token(
            settings,
            sub or f"{role}-1",
            roles or [role],
            timedelta(hours=1),
            datetime.now(UTC),
        )

    return make


def intake_body(**overrides: Any) -> dict[str, Any]:
    """A valid POST /complaints body; override any field."""
    body: dict[str, Any] = {
        "channel": "hotline",
        "customer": {
            "id": "cust-1",
            "name": "张伟",
            "phone": "13812341234",
            "email": "zhang.wei@example.cn",
        },
        "service_number": "13812341234",
        "business_type": "mobile",
        "category": "network_coverage",
        "occurred_at": "2026-11-20T08:30:00+08:00",
        "description": "家里没有4G信号,已持续三天。",
        "demand": "尽快修复",
        "reply_channel": "sms",
    }
    body.update(overrides)
    return body


#: The default time-limit policy, for tests that call the aggregate directly.
POLICY = Policy.load()
