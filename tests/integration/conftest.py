"""An HTTP client on the intake app (which also serves the shared reads), lifespan running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import column, inspect, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.callback.main import create_app as create_callback_app
from services.intake.main import create_app
from services.investigation.main import create_app as create_investigation_app
from shared.domain.clock import FixedClock
from shared.readmodel.projector import Projection, catch_up_once, position_of
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import TokenFactory


class Api:
    """A thin client that signs requests as a given role."""

    def __init__(self, client: httpx.AsyncClient, token: TokenFactory) -> None:
        self.client = client
        self.token = token

    def headers(self, role: str = "agent", sub: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, sub)}", **extra}

    async def accept(
        self, body: dict[str, object], role: str = "agent", **headers: str
    ) -> httpx.Response:
        return await self.client.post(
            "/complaints", json=body, headers=self.headers(role, **headers)
        )

    async def get(self, path: str, role: str = "agent", **params: str) -> httpx.Response:
        return await self.client.get(path, headers=self.headers(role), params=params)


@asynccontextmanager
async def serving(app: FastAPI, token: TokenFactory, peer: str = "127.0.0.1") -> AsyncIterator[Api]:
    """A signed client on an app whose lifespan (store, projector, jobs) is running; its
    requests come from the address `peer`."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, token)


async def catch_up(store: ComplaintStore, *projections: Projection, batch_size: int = 500) -> None:
    """Bring projections up to the last event (the apps' own projectors may run too)."""
    head = await store.ping()
    for projection in projections:
        while await position_of(store.engine, projection.name) < head:
            await catch_up_once(store, store.engine, projection, batch_size)


async def undo_list_filters(conn: AsyncConnection) -> None:
    """Take away what revision 0021 added (the list filters' columns and indexes), for tests
    that put a store back to an older revision."""
    for index in (
        "department",
        "investigator",
        "level",
        "vip_tier",
        "acceptance_key",
        "phone",
        "service_number",
        "next_due",
    ):
        await conn.execute(text(f"DROP INDEX ix_summaries_{index}"))
    for name in (
        "investigator",
        "acceptance_key",
        "phone_digest",
        "service_digest",
        "next_due_at",
    ):
        await conn.execute(text(f"ALTER TABLE complaint_summaries DROP COLUMN {name}"))


async def undo_after_list_filters(conn: AsyncConnection) -> None:
    """Take away the tables of the revisions after 0021 (0022's webhooks, 0023's KEK
    holders), for tests that put a store back to an older revision."""
    for name in ("webhook_attempts", "webhook_deliveries", "webhook_subscriptions", "kek_holders"):
        await conn.execute(text(f"DROP TABLE {name}"))


#: The apps a test runs beside `api` leave the projections to it. Their projectors would only
#: stand by (one process at a time leads), and two projectors stopping together on one SQLite
#: file can each wait out SQLite's busy timeout (10 s) for the other's write, at every test's
#: end.
ONE_PROJECTOR = {"projector_enabled": False}


@pytest.fixture
async def api(settings: Settings, clock: FixedClock, token: TokenFactory) -> AsyncIterator[Api]:
    """The intake app, with the projector; its webhook sender off (test_webhooks drives one of
    its own): a second lease-holding job stopping beside the projector on one SQLite file can
    wait out SQLite's busy timeout at the test's end."""
    app = create_app(settings.model_copy(update={"webhooks_enabled": False}), clock=clock)
    async with serving(app, token) as client:
        yield client


@pytest.fixture
async def inv(settings: Settings, clock: FixedClock, token: TokenFactory) -> AsyncIterator[Api]:
    """The investigation app, its dispatcher off (tests drive one against a local gateway),
    and its projector off: `api`'s runs the projections (see ONE_PROJECTOR)."""
    app = create_investigation_app(
        settings.model_copy(update={"dispatcher_enabled": False, **ONE_PROJECTOR}), clock=clock
    )
    async with serving(app, token) as client:
        yield client


@pytest.fixture
async def cb(settings: Settings, clock: FixedClock, token: TokenFactory) -> AsyncIterator[Api]:
    """The callback app: callback, archive and the improvement reports; its projector off:
    `api`'s runs the projections (see ONE_PROJECTOR)."""
    app = create_callback_app(settings.model_copy(update=ONE_PROJECTOR), clock=clock)
    async with serving(app, token) as client:
        yield client


async def database_blobs(engine: AsyncEngine) -> dict[str, bytes]:
    """Every table of the database, each as one blob of all its values: where a promise about
    data (erased, sealed, kept as a digest) is checked as the database holds it."""
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        blobs = {}
        for name in names:
            columns = await conn.run_sync(
                lambda sync, n=name: [c["name"] for c in inspect(sync).get_columns(n)]
            )
            rows = (await conn.execute(select(table(name, *map(column, columns))))).all()
            blobs[name] = b"\n".join(
                value if isinstance(value, bytes) else str(value).encode()
                for row in rows
                for value in (bytes(v) if isinstance(v, memoryview) else v for v in row)
            )
    return blobs
