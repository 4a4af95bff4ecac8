"""An HTTP client on the intake app (which also serves the shared reads), lifespan running."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.intake.main import create_app
from services.investigation.main import create_app as create_investigation_app
from shared.domain.clock import FixedClock
from shared.settings import Settings
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


@pytest.fixture
async def api(settings: Settings, clock: FixedClock, token: TokenFactory) -> AsyncIterator[Api]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield Api(client, token)


@pytest.fixture
async def inv(settings: Settings, clock: FixedClock, token: TokenFactory) -> AsyncIterator[Api]:
    """The investigation app, its dispatcher off (tests drive one against a local gateway)."""
    app = create_investigation_app(
        settings.model_copy(update={"dispatcher_enabled": False}), clock=clock
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inv") as client:
            yield Api(client, token)
