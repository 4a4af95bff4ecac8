"""Rate limits that hold across replicas: two app instances counting in one Redis allow a
client its burst once, not twice; without Redis each counts alone; an unreachable Redis lets
requests through and counts them."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import redis

from services.intake.main import create_app
from shared.domain.clock import FixedClock
from shared.settings import Settings
from tests.conftest import TokenFactory, create_schema, make_settings
from tests.integration.conftest import Api, serving

BURST = 3


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis (127.0.0.1:6379, as on CI); else a `redis-server` of our own."""
    url = "redis://127.0.0.1:6379/0"
    if _answers(url):
        yield url
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no Redis answers at 127.0.0.1:6379 and redis-server is not installed")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not _answers(url):
            assert time.monotonic() < deadline, "the redis-server started here did not answer"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """SQLite only: the store does not matter here, the limits' store does. Three requests at
    once per client, then one each ten seconds."""
    url = f"sqlite:///{tmp_path / 'complaints.sqlite3'}"
    asyncio.run(create_schema(make_settings(url)))
    return make_settings(
        url,
        rate_limit_per_second=0.1,
        rate_limit_burst=BURST,
        # a prefix of its own per test: runs (and tests) never count each other's requests
        rate_limit_key_prefix=f"complaints-test-{uuid.uuid4().hex}",
    )


async def replicas(
    stack: AsyncExitStack, settings: Settings, clock: FixedClock, token: TokenFactory
) -> tuple[Api, Api]:
    """Two instances of the intake service on the same settings, as two replicas would be."""
    one = await stack.enter_async_context(serving(create_app(settings, clock=clock), token))
    two = await stack.enter_async_context(serving(create_app(settings, clock=clock), token))
    return one, two


async def codes(apis: list[Api], sub: str) -> list[int]:
    """One request from client `sub` to each of `apis`, in turn."""
    return [
        (await api.client.get("/complaints", headers=api.headers("agent", sub))).status_code
        for api in apis
    ]


def counted(api: Api, name: str) -> float:
    registry = api.client._transport.app.state.registry  # type: ignore[attr-defined]
    return registry.get_sample_value(name, {"service": "intake"}) or 0.0


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as the_stack:
        yield the_stack


async def test_replicas_sharing_a_redis_allow_the_burst_once(
    stack: AsyncExitStack,
    settings: Settings,
    redis_url: str,
    clock: FixedClock,
    token: TokenFactory,
) -> None:
    shared = settings.model_copy(update={"rate_limit_storage_url": redis_url})
    one, two = await replicas(stack, shared, clock, token)
    # Spread over both: the burst once, then 429 from either.
    answers = await codes([one, two, one, two, one], "agent-7")
    assert answers == [200] * BURST + [429, 429]
    refused = await one.client.get("/complaints", headers=one.headers("agent", "agent-7"))
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    # Another client is not held back by this one, on either replica.
    assert await codes([one, two], "agent-8") == [200, 200]
    assert counted(one, "complaints_rate_limited_requests_total") == 2
    assert counted(two, "complaints_rate_limited_requests_total") == 1
    assert counted(one, "complaints_rate_limit_storage_errors_total") == 0
    # The keys are in Redis, under the prefix: each names a client by its token's `sub`, never
    # the token itself, and expires with the window (nothing of anyone stays in Redis).
    client = redis.Redis.from_url(redis_url)
    keys = client.keys(f"{settings.rate_limit_key_prefix}:*")
    ttls = [client.ttl(key) for key in keys]
    tokens = [one.headers("agent", sub)["Authorization"] for sub in ("agent-7", "agent-8")]
    client.delete(*keys)
    client.close()
    assert keys
    assert all(b"sub:agent-" in key for key in keys), keys
    assert not any(t.split()[-1].encode() in key for key in keys for t in tokens)
    assert all(0 < ttl <= 30 for ttl in ttls), ttls


async def test_without_a_shared_store_each_process_counts_alone(
    stack: AsyncExitStack, settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    assert settings.rate_limit_storage_url is None
    one, two = await replicas(stack, settings, clock, token)
    # Each replica lets the client send its burst: twice the limit in all.
    assert await codes([one, two] * BURST, "agent-7") == [200] * 2 * BURST
    assert await codes([one, two], "agent-7") == [429, 429]


async def test_an_unreachable_store_lets_requests_through_and_counts_them(
    stack: AsyncExitStack,
    settings: Settings,
    clock: FixedClock,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    nobody = f"redis://127.0.0.1:{_free_port()}/0"  # (nothing listens there)
    down = settings.model_copy(update={"rate_limit_storage_url": nobody})
    one, _ = await replicas(stack, down, clock, token)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="complaints.http"):
        answers = await codes([one] * (BURST + 2), "agent-7")
    # Fail open: an outage of Redis is no outage of the API, and costs it no waiting.
    assert answers == [200] * (BURST + 2)
    assert time.monotonic() - started < 5
    assert counted(one, "complaints_rate_limit_storage_errors_total") == BURST + 2
    assert counted(one, "complaints_rate_limited_requests_total") == 0
    warnings = [r for r in caplog.records if "rate-limit store failed" in r.getMessage()]
    assert len(warnings) == 1  # once when it fails, not once per request


def test_a_storage_url_that_is_not_redis_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="COMPLAINTS_RATE_LIMIT_STORAGE_URL"):
        Settings(rate_limit_storage_url="memcached://cache:11211")
    assert Settings(rate_limit_storage_url="").rate_limit_storage_url is None
