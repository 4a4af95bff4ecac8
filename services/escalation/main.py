"""Escalation: serves the shared reads until its own commands land."""

from __future__ import annotations

from fastapi import FastAPI

from shared.domain.clock import Clock, system_clock
from shared.domain.codes import Service
from shared.http.app import create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    return create_service_app(
        settings or Settings(), service=Service.ESCALATION, routers=(), clock=clock
    )
