"""The app factory every service uses: settings, store, errors, auth, metrics, common reads."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from shared.audit.chain import ChainProjection
from shared.audit.checkpoints import Checkpoints, KeyRetired, load_key
from shared.console import install_console
from shared.console.session import PREFIX as CONSOLE_PREFIX
from shared.domain.clock import Clock, system_clock
from shared.domain.codes import Service
from shared.domain.context import Actor, CommandContext
from shared.http import audit, gauges, ops, reads
from shared.http.auth import TokenVerifier
from shared.http.cors import Cors
from shared.http.deps import known_query_only
from shared.http.docs import install_docs
from shared.http.errors import UNKNOWN_QUERY_RESPONSES, install_error_handlers
from shared.http.middleware import (
    CommandGuard,
    MetricsPort,
    Observe,
    RateLimit,
    RateLimitStore,
)
from shared.http.openapi import install_openapi
from shared.http.tracing import install_tracing
from shared.readmodel.projector import ProjectionRunner
from shared.readmodel.retention import customers_due_for_erasure
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.facade import ComplaintStore, not_reachable_yet
from shared.store.lease import holder_name
from shared.webhooks.projection import WebhookProjection

log = logging.getLogger("complaints")

#: How often old Idempotency-Key answers are forgotten and retention is applied.
PURGE_SECONDS = 300.0

API_DESCRIPTION = """
Part of the event-sourced complaint platform. Every complaint is rebuilt from its events.

* **Auth**: `Authorization: Bearer <JWT>` with `sub`, the roles and `exp`: a token of the
  operator's identity provider (RS256/ES256, when `COMPLAINTS_JWKS_URL` is set) or one of the
  service's own (HS256). Locally: `make token ROLE=agent`.
* **Errors**: `application/problem+json` (RFC 9457); validation errors list each field.
* **Retries**: send `Idempotency-Key` on any POST; the same key and body return the first
  answer and append nothing; the same key with another body → 422 `idempotency-key-reused`.
* **Concurrency**: reads return `ETag: "<version>"`; send it back as `If-Match` to get 412
  instead of acting on a stale view.
"""


#: While the database cannot be reached at start, opening the store is tried again after this
#: many seconds, doubling (with jitter) up to the maximum; the process stays up meanwhile,
#: live (`/health`) and not ready (`/ready` says why).
OPEN_RETRY_SECONDS = 0.5
OPEN_RETRY_MAX_SECONDS = 5.0


def describe(exc: BaseException) -> str:
    """An error in one line, for /ready and the logs (no traceback, bounded)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def cannot_open(exc: BaseException) -> str:
    """Why the process is not ready while its store cannot be opened."""
    return f"the event store cannot be opened: {describe(exc)}"


async def open_when_reachable(
    store: ComplaintStore, waiting: Callable[[str], None] | None = None
) -> None:
    """Open the store, trying again with backoff while the database cannot be reached (or is
    not set up yet), telling `waiting` why each time. A failure of another kind (a KEK not at
    hand) is raised."""

    def before_sleep(state: RetryCallState) -> None:
        failed = state.outcome.exception() if state.outcome is not None else None
        why = cannot_open(failed or RuntimeError())
        if waiting is not None:
            waiting(why)
        log.warning("%s; trying again in %.1f s", why, state.upcoming_sleep)

    retrying = AsyncRetrying(
        retry=retry_if_exception(not_reachable_yet),
        wait=wait_exponential_jitter(multiplier=OPEN_RETRY_SECONDS, max=OPEN_RETRY_MAX_SECONDS),
        before_sleep=before_sleep,
        reraise=True,
    )
    await retrying(store.open)


#: Who erases personal data whose retention ran out, how many customers it looks up at once,
#: and how long one housekeeping run may spend on it (the projections wait meanwhile).
RETENTION = Actor(id="retention", role="system")
RETENTION_BATCH = 20
RETENTION_BUDGET_SECONDS = 2.0


async def erase_expired(
    store: ComplaintStore, settings: Settings, at: datetime, service: str
) -> int:
    """Erase the customers whose complaints have all been archived longer than the retention
    setting allows, for at most RETENTION_BUDGET_SECONDS; returns how many."""
    if not settings.personal_data_retention_days:
        return 0
    cutoff = at - timedelta(days=settings.personal_data_retention_days)
    budget_ends, erased = time.monotonic() + RETENTION_BUDGET_SECONDS, 0
    while time.monotonic() < budget_ends:
        due = await customers_due_for_erasure(store.engine, cutoff, RETENTION_BATCH)
        for customer_id in due:
            ctx = CommandContext(actor=RETENTION, service=service, at=at)
            try:
                erasure = await store.erase_customer(customer_id, ctx)
            except Exception:  # its key is still there: the next run tries again
                log.exception("retention: erasing a customer's personal data failed")
                continue
            erased += 1
            log.info(
                "retention: erased the personal data of %d complaint(s)", len(erasure.complaints)
            )
        if len(due) < RETENTION_BATCH:
            break
    return erased


def projection_runner(
    settings: Settings,
    store: ComplaintStore,
    checkpoints: Checkpoints,
    clock: Clock,
    service: str,
) -> ProjectionRunner:
    """The read models, the audit chain and the webhook deliveries' queue; the process that
    runs them also signs the chain head now and then, forgets old Idempotency-Key answers and
    erases personal data kept past its retention."""
    last = {"signed": 0.0, "purged": 0.0}

    async def housekeeping() -> None:
        at = clock()
        now = at.timestamp()
        if now - last["signed"] >= settings.checkpoint_seconds:
            try:
                await checkpoints.sign_head(at)
            except KeyRetired as exc:
                log.warning("audit: no checkpoint signed: %s", exc)
            last["signed"] = now
        if now - last["purged"] >= PURGE_SECONDS:
            await store.idempotency.forget_older_than(settings.idempotency_retention_hours * 3600)
            await erase_expired(store, settings, at, service)
            last["purged"] = now

    listen_url = (
        settings.url.set(drivername="postgresql").render_as_string(hide_password=False)
        if settings.is_postgres
        else None
    )
    return ProjectionRunner(
        store,
        store.engine,
        [SummaryProjection(store), ChainProjection(), WebhookProjection(clock)],
        lease_seconds=settings.projector_lease_seconds,
        poll_seconds=settings.projector_poll_seconds,
        listen_url=listen_url,
        after_batch=housekeeping,
    )


def freeze_what_start_up_built() -> None:
    """Put what start-up built (modules, schemas, routes, pools: it lives as long as the
    process) out of the garbage collector's sight, once per process. A full collection then
    walks only what requests made: reading a 1,000-event complaint makes some hundred
    thousand objects, and every so often one such read paid for a walk over the whole heap
    (p99 118 ms against a median of 6 ms, measured in-process; 8.5 ms frozen)."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def create_service_app(
    settings: Settings,
    *,
    service: Service,
    routers: Sequence[APIRouter] = (),
    clock: Clock = system_clock,
    store: ComplaintStore | None = None,
    background: Sequence[Callable[[FastAPI], Coroutine[Any, Any, None]]] = (),
) -> FastAPI:
    """A FastAPI app for one service, wired to the shared event store.

    `background`: what this service alone runs besides requests (each is started after the
    store opens and cancelled at shutdown).
    """
    settings.check()
    the_store = store or ComplaintStore(settings, clock=clock)
    rate_limits = RateLimitStore(settings.rate_limit_storage_url, settings.rate_limit_key_prefix)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.hs256_secret() is None:
            log.info("HS256 tokens are off: only the identity provider's tokens are accepted")
        elif settings.uses_dev_secret():
            log.warning("using the development JWT secret; set COMPLAINTS_JWT_SECRET")
        if settings.jwks_url and settings.jwt_audience is None:
            log.warning(
                "COMPLAINTS_JWT_AUDIENCE is not set: a token the identity provider issued to "
                "any of its clients is accepted"
            )
        key = load_key(settings.audit_key_path, create=False)
        checkpoints = Checkpoints(the_store.engine, key, settings.audit_key_path)
        app.state.checkpoints = checkpoints
        runner = projection_runner(settings, the_store, checkpoints, clock, service.value)
        app.state.projector = runner
        metrics = the_store.metrics
        metrics.on_scrape("projections", partial(gauges.projection_lag, the_store, runner, clock))
        metrics.on_scrape("checkpoint", partial(gauges.checkpoint_lag, the_store, clock))
        metrics.on_scrape("store", partial(gauges.store_in_use, the_store))
        metrics.on_scrape("keks", partial(gauges.kek_ages, the_store, settings, clock))
        tasks: list[asyncio.Task[None]] = []

        def start_work() -> None:
            """The projector and the service's jobs, once the store is open."""
            app.state.not_ready = None
            # Which KEKs this process holds: a staged KEK is put in force once all hold it.
            tasks.append(asyncio.create_task(the_store.keep_reporting_keks(holder_name(app))))
            if settings.projector_enabled:
                tasks.append(asyncio.create_task(runner.run()))
            tasks.extend(asyncio.create_task(job(app)) for job in background)

        async def start_when_reachable() -> None:
            def waiting(why: str) -> None:
                app.state.not_ready = why

            try:
                await open_when_reachable(the_store, waiting)
            except Exception as exc:
                app.state.not_ready = cannot_open(exc)
                log.critical("%s; this process will not become ready", app.state.not_ready)
                return
            log.info("the event store is open: ready")
            start_work()

        try:
            await the_store.open()
        except Exception as exc:
            if not not_reachable_yet(exc):
                raise  # (a KEK not at hand, a key file missing: refuse to start)
            # Alive and not ready until the database answers; then ready without a restart.
            app.state.not_ready = cannot_open(exc)
            log.warning("%s; starting anyway, not ready until it can be", app.state.not_ready)
            tasks.append(asyncio.create_task(start_when_reachable()))
        else:
            start_work()
        freeze_what_start_up_built()
        try:
            yield
        finally:
            # Every task must have ended before the store closes under it. (A re-cancel or a
            # time limit here was tried: SQLAlchemy finishes closing a connection even when
            # cancelled, and cutting that short left connections that never closed.)
            while tasks:
                ending = list(tasks)
                tasks.clear()
                for task in ending:
                    task.cancel()
                for task in ending:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await the_store.close()
            await rate_limits.close()
            if app.state.tracer_provider is not None:
                app.state.tracer_provider.shutdown()

    app = FastAPI(
        title=f"Complaints — {service.value}",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        # readable operation ids (`accept_complaint`), which generated clients name methods by
        generate_unique_id_function=lambda route: route.name,
        docs_url=None,  # install_docs serves them without a CDN
        redoc_url=None,
        # Every route refuses query parameters it does not take.
        dependencies=[Depends(known_query_only)],
        responses=UNKNOWN_QUERY_RESPONSES,
    )
    install_openapi(app, models=(audit.ExportLine, audit.ExportTrailerLine))
    # The store's metrics: the middleware, projector and jobs count on its registry too.
    metrics = the_store.metrics
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    app.state.service = service.value
    app.state.clock = clock
    app.state.store = the_store
    app.state.metrics = metrics
    app.state.registry = metrics.registry
    #: Why the process is not ready (the store not open yet), or None.
    app.state.not_ready = "starting"
    app.state.tracer_provider = install_tracing(app, settings, service.value, the_store.engine)

    install_error_handlers(app)
    install_docs(app)
    # (the console's forms are pages, not commands: the guard meets their commands after)
    app.add_middleware(
        CommandGuard,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
        service=service.value,
        pages_prefix=CONSOLE_PREFIX + "/",
    )
    if settings.rate_limit_per_second > 0:  # outside the guard: a throttled retry claims no key
        app.add_middleware(
            RateLimit,
            burst=settings.rate_limit_burst,
            window_seconds=int(settings.rate_limit_window_seconds),
            store=rate_limits,
            metrics=metrics,
            service=service.value,
        )
    if settings.metrics_port is not None:  # outside the limits, inside Observe: counted
        app.add_middleware(MetricsPort, port=settings.metrics_port)
    app.add_middleware(Observe, metrics=metrics, service=service.value)
    # CORS outside the rest: a preflight meets no rate limit, guard or token check (nor the
    # access log), and every answer (a 401, a 429, Observe's 500) carries the CORS headers.
    if settings.cors_origins:
        app.add_middleware(Cors, origins=settings.cors_origins)
    if settings.trusted_proxies:  # outermost: a request's address is settled before all else
        app.add_middleware(
            ProxyHeadersMiddleware, trusted_hosts=[str(n) for n in settings.trusted_proxies]
        )
    for router in routers:
        app.include_router(router)
    app.include_router(reads.router)
    app.include_router(audit.router)
    app.include_router(ops.router)
    install_console(app)
    return app
