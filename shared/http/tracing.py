"""Traces (OpenTelemetry): on only when an OTLP endpoint is configured
(`COMPLAINTS_OTLP_ENDPOINT`, or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`); otherwise nothing
is instrumented and no span is made.

When on, a service's requests are server spans (the FastAPI instrumentation; a `traceparent`
header makes them part of the caller's trace), its SQL statements on its own tables are client
spans (the SQLAlchemy instrumentation, on its engine), and its calls out through httpx (the
notification gateway, webhook receivers) are client spans that send `traceparent` on. Work done
later for a request (a message the dispatcher sends) continues the request's trace: its events
record the request's `traceparent` (`CommandContext`), and `continued` takes it up again.
Spans go to the collector in batches (OTLP over HTTP), from a provider of the app's own (none
is set globally).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry import context, propagate
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.settings import Settings

#: Polled by orchestrators and scrapers many times a minute: no spans.
UNTRACED_PATHS = "/health,/ready,/metrics"


#: Span attributes that hold a URL or its query (old and new semantic conventions).
URL_ATTRIBUTES = ("http.url", "http.target", "url.full")
QUERY_ATTRIBUTES = ("url.query",)


def cut_queries(span: Any, *_: Any) -> None:
    """No span keeps a query string: a list's filters name a phone number, a customer id.
    The instrumentations' hooks call this once they have set the URL (a server span's
    request hook, a client span's), before any exporter sees the span."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(key, value.split("?", 1)[0])
    for key in QUERY_ATTRIBUTES:
        if attributes.get(key):
            span.set_attribute(key, "")


async def _cut(span: Any, *_: Any) -> None:
    cut_queries(span)


def span_exporter(endpoint: str) -> SpanExporter:
    """Where the spans go: the collector's OTLP/HTTP traces endpoint under `endpoint` (as the
    standard OTEL_EXPORTER_OTLP_ENDPOINT, a base URL); the exporter's other OTEL_EXPORTER_OTLP_*
    settings (headers, timeout, compression) are its own."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")


def install_tracing(
    app: FastAPI, settings: Settings, service: str, engine: AsyncEngine
) -> TracerProvider | None:
    """Instrument the app and its engine when an OTLP endpoint is configured; the provider
    (shut down with the app), or None when traces are off."""
    if not settings.otlp_endpoint:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": f"complaints-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter(settings.otlp_endpoint)))
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=UNTRACED_PATHS,
        server_request_hook=cut_queries,
    )
    # This engine only (the instrumentor's `instrument()` would patch every engine created in
    # the process, once per process).
    usage = NoOpMeterProvider().get_meter(__name__).create_up_down_counter("unused")
    tracer = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]
    return provider


def trace_client(app: FastAPI, client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Its calls traced, `traceparent` sent on, when the app traces; as it was otherwise."""
    provider = getattr(app.state, "tracer_provider", None)
    if provider is not None:
        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=provider, request_hook=_cut
        )
    return client


@contextmanager
def continued(traceparent: str | None) -> Iterator[None]:
    """Work done now for an earlier request (its `traceparent`, as its events recorded it)
    continues that request's trace; without one, or with traces off, nothing changes."""
    if not traceparent:
        yield
        return
    token = context.attach(propagate.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)
