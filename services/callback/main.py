"""Callback: the follow-up call (回访), the archive (归档) and the improvement reports."""

from __future__ import annotations

from fastapi import FastAPI

from services.callback.router import reports, router
from shared.domain.clock import Clock, system_clock
from shared.domain.codes import Service
from shared.domain.policy import load_policies
from shared.http.app import create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    settings = settings or Settings()
    app = create_service_app(
        settings, service=Service.CALLBACK, routers=[router, reports], clock=clock
    )
    # Loaded now, so a bad policy file stops the service at start rather than in a report.
    app.state.policies = load_policies(settings.policy_dir, app.state.store.policy)
    return app
