"""Readiness that means something: 503 while the store cannot be opened (the process stays
alive meanwhile, and becomes ready by itself when it can), or while a projection this process
runs lags beyond the settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from services.intake.main import create_app
from shared.audit.checkpoints import load_key
from shared.domain.clock import FixedClock
from shared.http import app as app_module
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.keystore import KekFile
from tests.conftest import AUDIT_KEY, KEK_FILE, create_schema, intake_body, make_settings
from tests.integration.conftest import Api, serving
from tests.postgres import create_database, drop_database

pytestmark = pytest.mark.timeout(60)

SUMMARIES = SummaryProjection.name


async def until(condition: Any, seconds: float = 10.0) -> None:
    """Wait for an async condition to hold (fails the test if it does not in time)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


def app_of(api: Api) -> FastAPI:
    app: FastAPI = api.client._transport.app  # type: ignore[attr-defined]
    return app


async def is_leader(api: Api) -> bool:
    return bool(app_of(api).state.projector.is_leader)


@pytest.fixture
def empty_database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database that exists but has not been set up (no tables): as the store is before
    `make setup` has run (the keys are there already)."""
    load_key(AUDIT_KEY, create=True)
    KekFile.load(KEK_FILE, create=True)
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'later.sqlite3'}"
        return
    admin = request.getfixturevalue("postgres_admin_url")
    url = create_database(admin)
    yield url
    drop_database(admin, url)


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "OPEN_RETRY_SECONDS", 0.05)
    monkeypatch.setattr(app_module, "OPEN_RETRY_MAX_SECONDS", 0.2)


@pytest.mark.usefixtures("quick_retries")
async def test_starts_without_its_store_and_becomes_ready_when_it_is_there(
    empty_database: str, clock: FixedClock, token: Any
) -> None:
    settings = make_settings(empty_database)
    async with serving(create_app(settings, clock=clock), token) as api:
        assert (await api.client.get("/health")).json()["status"] == "ok"
        ready = await api.client.get("/ready")
        assert ready.status_code == 503
        assert ready.headers["content-type"] == "application/problem+json"
        assert "the event store cannot be opened" in ready.json()["detail"]
        # A request meanwhile is told to come back, not failed with a 500.
        refused = await api.accept(intake_body())
        assert refused.status_code == 503 and refused.headers["Retry-After"]

        await create_schema(settings)  # the store is there now: no restart needed

        async def answers() -> bool:
            return (await api.client.get("/ready")).status_code == 200

        await until(answers)
        assert (await api.accept(intake_body())).status_code == 201
        await until(lambda: is_leader(api))  # the projector started too


@pytest.fixture
async def lagging_api(
    settings: Settings, clock: FixedClock, token: Any, request: pytest.FixtureRequest
) -> AsyncIterator[Api]:
    """The intake app whose summaries projection fails (so falls behind) until put back."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    app = create_app(settings.model_copy(update=overrides), clock=clock)
    async with serving(app, token) as api:
        await until(lambda: is_leader(api))
        summaries = next(p for p in app.state.projector.projections if p.name == SUMMARIES)
        write = summaries.write

        async def broken(*_: Any) -> None:
            raise RuntimeError("summaries broken for the test")

        summaries.write = broken
        yield api
        summaries.write = write


@pytest.mark.parametrize(
    "lagging_api", [{"ready_max_lag_events": 2, "ready_max_lag_seconds": 0}], indirect=True
)
async def test_ready_is_503_while_a_projection_it_runs_lags_by_events(lagging_api: Api) -> None:
    api = lagging_api
    assert (await api.client.get("/ready")).status_code == 200
    accepted = await api.accept(intake_body())
    assert accepted.status_code == 201

    async def only_summaries_behind() -> bool:  # (the others catch up meanwhile)
        answer = await api.client.get("/ready")
        return answer.status_code == 503 and len(answer.json()["lagging"]) == 1

    await until(only_summaries_behind)
    problem = (await api.client.get("/ready")).json()
    assert SUMMARIES in problem["detail"]
    assert problem["position"] >= accepted.json()["position"]  # where the store is
    [lagging] = problem["lagging"]
    assert lagging["projection"] == SUMMARIES and lagging["lag"] > 2

    app = app_of(api)
    summaries = next(p for p in app.state.projector.projections if p.name == SUMMARIES)
    del summaries.write  # the class's own again: it catches up, and the process is ready

    async def ready() -> bool:
        return (await api.client.get("/ready")).status_code == 200

    await until(ready)


@pytest.mark.parametrize(
    "lagging_api", [{"ready_max_lag_events": 0, "ready_max_lag_seconds": 60}], indirect=True
)
async def test_ready_is_503_while_a_projection_it_runs_lags_by_seconds(
    lagging_api: Api, clock: FixedClock
) -> None:
    api = lagging_api
    assert (await api.accept(intake_body())).status_code == 201
    await asyncio.sleep(0.3)  # a few projector rounds: behind, but not for long yet
    assert (await api.client.get("/ready")).status_code == 200
    clock.advance(timedelta(seconds=61))

    async def only_summaries_behind() -> bool:  # (the others catch up meanwhile)
        answer = await api.client.get("/ready")
        return answer.status_code == 503 and len(answer.json()["lagging"]) == 1

    await until(only_summaries_behind)
    problem = await api.client.get("/ready")
    [lagging] = problem.json()["lagging"]
    assert lagging["projection"] == SUMMARIES and lagging["lag_seconds"] >= 61


async def test_a_process_that_runs_no_projector_is_not_unready_for_their_lag(
    settings: Settings, clock: FixedClock, token: Any
) -> None:
    """Its requests are served as well as ever: the lag is the projector's to answer for."""
    quiet = settings.model_copy(update={"projector_enabled": False, "ready_max_lag_events": 1})
    async with serving(create_app(quiet, clock=clock), token) as api:
        assert (await api.accept(intake_body())).status_code == 201
        ready = await api.client.get("/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert body["projector"] == "off"
        assert body["projections"][SUMMARIES]["lag"] > 1
