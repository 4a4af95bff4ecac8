"""Escalation: escalations, reviews, regulator appeals; the deadline watch that escalates a
complaint by itself when one of its limits passes; major incidents, detected and read."""

from __future__ import annotations

from fastapi import FastAPI

from services.escalation.incidents import IncidentWatch
from services.escalation.recalculation import Recalculation
from services.escalation.router import incidents as incident_reads
from services.escalation.router import router
from services.escalation.watch import DeadlineWatch
from shared.domain.clock import Clock, system_clock
from shared.domain.codes import Service
from shared.http.app import create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    settings = settings or Settings()

    async def watch(app: FastAPI) -> None:
        await DeadlineWatch(
            app.state.store,
            clock=clock,
            interval_seconds=settings.deadline_watch_seconds,
            lease_seconds=settings.watch_lease_seconds,
        ).run()

    async def incidents(app: FastAPI) -> None:
        await IncidentWatch(
            app.state.store, clock=clock, lease_seconds=settings.watch_lease_seconds
        ).run()

    async def recalculation(app: FastAPI) -> None:
        await Recalculation(
            app.state.store,
            clock=clock,
            interval_seconds=settings.recalculation_seconds,
            lease_seconds=settings.watch_lease_seconds,
        ).run()

    return create_service_app(
        settings,
        service=Service.ESCALATION,
        routers=[router, incident_reads],
        clock=clock,
        background=[watch, incidents, recalculation] if settings.deadline_watch_enabled else [],
    )
