"""Intake: accepts complaints and refusals; serves the shared reads; keeps the webhook
subscriptions and sends their deliveries."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.intake import subscriptions
from services.intake.router import router
from services.intake.webhooks import WebhookSender
from shared.domain.clock import Clock, system_clock
from shared.domain.codes import Service
from shared.http.app import create_service_app
from shared.http.tracing import trace_client
from shared.settings import Settings


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    settings = settings or Settings()

    async def send_webhooks(app: FastAPI) -> None:
        timeout = httpx.Timeout(settings.webhook_timeout_seconds)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            sender = WebhookSender(
                app.state.store,
                trace_client(app, client),
                clock=clock,
                backoff_seconds=settings.webhook_backoff_seconds,
                backoff_max_seconds=settings.webhook_backoff_max_seconds,
                max_attempts=settings.webhook_max_attempts,
                local_allowed=settings.webhook_local_urls_allowed,
                timeout_seconds=settings.webhook_timeout_seconds,
                traced=app.state.tracer_provider is not None,
            )
            await sender.run()

    return create_service_app(
        settings,
        service=Service.INTAKE,
        routers=[router, subscriptions.router],
        clock=clock,
        background=[send_webhooks] if settings.webhooks_enabled else [],
    )
