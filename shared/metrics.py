"""The Prometheus metrics of one process: what an operator alerts on.

One `Metrics` per event store (`ComplaintStore.metrics`), so everything that holds the store
(the app, its middleware, the projector, the watches, the dispatcher, the webhook sender)
counts on the same registry, the one `/metrics` shows. Events are counted where they happen
(cheap counters); states (projection lag, messages pending, checkpoint age, pool in use) are
read when scraped, by the sources registered with `on_scrape`, each a bounded query.

Labels only ever take values from the code (event types, services, route templates,
projection names, outcomes): never an id, a key or anything personal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger("complaints.metrics")

#: What `/metrics` answers with.
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: How long one scrape-time source may take before it is left out of that scrape.
SOURCE_SECONDS = 2.0

#: A scrape-time source: the metric families it reads now.
Source = Callable[[], Awaitable[Iterable[Metric]]]

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class _Scraped(Collector):
    """Yields what the sources read at the last scrape (`Metrics.exposition` reads them
    first, then collects, under one lock)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.families

    def describe(self) -> Iterator[Metric]:
        return iter(())  # names vary with the sources: nothing claimed in advance


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
        PlatformCollector(registry=registry)
        self._scraped = _Scraped()
        registry.register(self._scraped)
        self._sources: dict[str, Source] = {}
        self._lock = asyncio.Lock()

        # -- HTTP (shared.http.middleware.Observe)
        self.http_requests = Counter(
            "complaints_http_requests",
            "HTTP requests answered, by route template and status",
            ["service", "method", "route", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "complaints_http_request_seconds",
            "Time to answer an HTTP request",
            ["service", "method", "route"],
            registry=registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.rate_limited = Counter(
            "complaints_rate_limited_requests",
            "Requests refused with 429 because their client went over the rate limit",
            ["service"],
            registry=registry,
        )
        self.rate_limit_storage_errors = Counter(
            "complaints_rate_limit_storage_errors",
            "Requests let through unlimited because the shared rate-limit store (Redis) failed",
            ["service"],
            registry=registry,
        )
        self.idempotency_replays = Counter(
            "complaints_idempotency_replays",
            "Requests answered again from a stored answer (same Idempotency-Key and body)",
            ["service"],
            registry=registry,
        )
        self.idempotency_conflicts = Counter(
            "complaints_idempotency_conflicts",
            "Requests refused with 422 for reusing an Idempotency-Key with another body",
            ["service"],
            registry=registry,
        )
        # -- the event store (shared.store)
        self.events_appended = Counter(
            "complaints_events_appended",
            "Events committed to the event store, by event type and the service that wrote them",
            ["type", "service"],
            registry=registry,
        )
        self.store_latency = Histogram(
            "complaints_store_call_seconds",
            "Round trip of a call into the event store (worker thread and database)",
            ["operation"],
            registry=registry,
            buckets=_FAST,
        )
        # -- projections (shared.readmodel.projector)
        self.projector_batches = Counter(
            "complaints_projector_batches",
            "Batches of events a projection applied",
            ["projection"],
            registry=registry,
        )
        self.projector_errors = Counter(
            "complaints_projector_errors",
            "Projector batches or steps that failed (retried); projection 'runner' is a step",
            ["projection"],
            registry=registry,
        )
        # -- the deadline watch (services.escalation.watch)
        self.watch_runs = Counter(
            "complaints_deadline_watch_runs",
            "Passes of the deadline watch over the limits due",
            registry=registry,
        )
        self.limits_missed = Counter(
            "complaints_limits_missed",
            "Limits the deadline watch found passed unmet (each tried once per pass)",
            registry=registry,
        )
        self.escalations = Counter(
            "complaints_escalations_raised",
            "Escalations the deadline watch recorded for missed limits",
            registry=registry,
        )
        # -- the outbox (services.investigation.dispatcher)
        self.notifications_sent = Counter(
            "complaints_notifications_sent",
            "Messages to customers the gateway accepted",
            registry=registry,
        )
        self.notifications_failed = Counter(
            "complaints_notifications_failed",
            "Attempts to send a message to a customer that failed (retried unless final)",
            ["final"],
            registry=registry,
        )
        # -- webhooks (services.intake.webhooks)
        self.webhook_deliveries = Counter(
            "complaints_webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, failed)",
            ["outcome"],
            registry=registry,
        )

    # ----------------------------------------------------------------- counting
    def appended(self, events: Iterable[Any]) -> None:
        """Count domain events just committed (each records its service in its context)."""
        for event in events:
            ctx = getattr(event, "ctx", None) or {}
            service = ctx.get("service") if isinstance(ctx, dict) else None
            self.events_appended.labels(type(event).__name__, str(service or "unknown")).inc()

    # ------------------------------------------------------------------ scraping
    def on_scrape(self, name: str, source: Source) -> None:
        """Read `source` at every scrape (a second source of that name replaces the first)."""
        self._sources[name] = source

    async def exposition(self) -> bytes:
        """The text `/metrics` answers: the sources read now, then every collector."""
        async with self._lock:
            families: list[Metric] = []
            for name, source in list(self._sources.items()):
                try:
                    async with asyncio.timeout(SOURCE_SECONDS):
                        families.extend(await source())
                except Exception as exc:  # the others are still shown
                    log.warning("metrics: %s not read: %s", name, type(exc).__name__)
            self._scraped.families = families
            try:
                return generate_latest(self.registry)
            finally:
                self._scraped.families = []
