"""The app factory every service uses: settings, store, errors, auth, metrics, common reads."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry

from shared.domain.clock import Clock, system_clock
from shared.domain.codes import Service
from shared.http import ops, reads
from shared.http.errors import install_error_handlers
from shared.http.middleware import CommandGuard, Metrics
from shared.settings import Settings
from shared.store.facade import ComplaintStore

log = logging.getLogger("complaints")

API_DESCRIPTION = """
Part of the event-sourced complaint platform. Every complaint is rebuilt from its events.

* **Auth**: `Authorization: Bearer <JWT>` (HS256, claims `sub`, `roles`, `exp`).
  Locally: `make token ROLE=agent`.
* **Errors**: `application/problem+json` (RFC 9457); validation errors list each field.
* **Retries**: send `Idempotency-Key` on any POST; the same key and body return the first
  answer and append nothing.
* **Concurrency**: reads return `ETag: "<version>"`; send it back as `If-Match` to get 412
  instead of acting on a stale view.
"""


def create_service_app(
    settings: Settings,
    *,
    service: Service,
    routers: Sequence[APIRouter] = (),
    clock: Clock = system_clock,
    store: ComplaintStore | None = None,
) -> FastAPI:
    """A FastAPI app for one service, wired to the shared event store."""
    settings.check()
    the_store = store or ComplaintStore(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.uses_dev_secret():
            log.warning("using the development JWT secret; set COMPLAINTS_JWT_SECRET")
        await the_store.open()
        try:
            yield
        finally:
            await the_store.close()

    app = FastAPI(
        title=f"Complaints — {service.value}",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    registry = CollectorRegistry()
    app.state.settings = settings
    app.state.service = service.value
    app.state.clock = clock
    app.state.store = the_store
    app.state.registry = registry

    install_error_handlers(app)
    app.add_middleware(CommandGuard, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(Metrics, registry=registry, service=service.value)
    for router in routers:
        app.include_router(router)
    app.include_router(reads.router)
    app.include_router(ops.router)
    return app
