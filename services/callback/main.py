"""Callback: the follow-up call (回访) and the archive (归档); improvement reports to come."""

from __future__ import annotations

from fastapi import FastAPI

from services.callback.router import router
from shared.domain.clock import Clock, system_clock
from shared.domain.codes import Service
from shared.http.app import create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    return create_service_app(
        settings or Settings(), service=Service.CALLBACK, routers=[router], clock=clock
    )
