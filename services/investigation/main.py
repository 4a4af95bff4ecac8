"""Investigation: assignment, evidence, extension, findings, resolution, reply; and the
dispatcher that sends progress notices and replies to the customer."""

from __future__ import annotations

from functools import partial

import httpx
from fastapi import FastAPI

from services.investigation.dispatcher import Dispatcher, outbox_gauges
from services.investigation.gateway import GatewayClient
from services.investigation.router import router
from shared.domain.clock import Clock, system_clock
from shared.domain.codes import Service
from shared.http.app import create_service_app
from shared.http.tracing import trace_client
from shared.settings import Settings


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    settings = settings or Settings()

    async def dispatch(app: FastAPI) -> None:
        timeout = httpx.Timeout(settings.notification_timeout_seconds)
        async with httpx.AsyncClient(timeout=timeout) as client:
            dispatcher = Dispatcher(
                app.state.store,
                GatewayClient(settings.notification_gateway_url, trace_client(app, client)),
                clock=clock,
                backoff_seconds=settings.notification_backoff_seconds,
                backoff_max_seconds=settings.notification_backoff_max_seconds,
            )
            await dispatcher.run()

    app = create_service_app(
        settings,
        service=Service.INVESTIGATION,
        routers=[router],
        clock=clock,
        background=[dispatch] if settings.dispatcher_enabled else [],
    )
    # The outbox's state on this service's /metrics (where its dispatcher runs).
    store = app.state.store
    store.metrics.on_scrape("outbox", partial(outbox_gauges, store, clock))
    return app
