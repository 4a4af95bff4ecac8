"""Traces: with an OTLP endpoint configured, a request that carries a `traceparent` is a server
span of that trace, and the message it asked for reaches the gateway carrying the same trace, as
does each webhook of its events; without one, nothing is instrumented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.intake.main import create_app
from services.intake.webhooks import WebhookSender
from services.investigation.dispatcher import Dispatcher
from services.investigation.gateway import GatewayClient
from shared.audit.chain import ChainProjection
from shared.domain.clock import FixedClock
from shared.http import tracing
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from shared.webhooks.projection import WebhookProjection
from tests.conftest import intake_body
from tests.integration.conftest import catch_up, serving

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The spans the apps export, kept in memory (instead of sent to the collector)."""
    exporter = InMemorySpanExporter()
    monkeypatch.setattr(tracing, "span_exporter", lambda endpoint: exporter)
    yield exporter


class Gateway:
    """A gateway that takes every message and keeps the headers it came with."""

    def __init__(self) -> None:
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.headers.append(request.headers)
        return httpx.Response(202, json={"id": f"gw-{len(self.headers)}"})


async def accept_and_dispatch(
    settings: Settings, clock: FixedClock, token: Any, store: ComplaintStore
) -> tuple[Any, Gateway, httpx.Response]:
    """Accept a complaint through intake with a `traceparent`, then send the acknowledgement
    it asked for through a dispatcher on the app's (maybe traced) httpx client."""
    app = create_app(settings.model_copy(update={"webhooks_enabled": False}), clock=clock)
    gateway = Gateway()
    async with serving(app, token) as api:
        created = await api.accept(
            intake_body(), traceparent=TRACEPARENT, **{"Idempotency-Key": "traced-1"}
        )
        await catch_up(store, SummaryProjection(store))
        plain = httpx.AsyncClient(transport=httpx.MockTransport(gateway))
        client = tracing.trace_client(app, plain)
        async with client:
            dispatcher = Dispatcher(
                store,
                GatewayClient("http://gateway.test/messages", client),
                clock=clock,
                backoff_seconds=2,
                backoff_max_seconds=60,
            )
            assert await dispatcher.dispatch_once() == 1
    return app, gateway, created


async def test_a_traced_request_and_the_message_it_asked_for_share_its_trace(
    settings: Settings,
    clock: FixedClock,
    token: Any,
    store: ComplaintStore,
    exported: InMemorySpanExporter,
) -> None:
    traced = settings.model_copy(update={"otlp_endpoint": "http://127.0.0.1:4318"})
    app, gateway, created = await accept_and_dispatch(traced, clock, token, store)
    assert created.status_code == 201
    app.state.tracer_provider.force_flush()
    spans = exported.get_finished_spans()
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.attributes is not None and server.attributes["http.route"] == "/complaints"
    # the store's SQL statements on our own tables are spans of the request too
    assert any(
        s.instrumentation_scope is not None
        and "sqlalchemy" in s.instrumentation_scope.name
        and s.context.trace_id == server.context.trace_id
        for s in spans
    )
    # the acknowledgement, sent later by the dispatcher, carries the same trace on
    [headers] = gateway.headers
    assert headers["traceparent"].split("-")[1] == TRACE_ID


async def test_without_an_endpoint_nothing_is_instrumented(
    settings: Settings,
    clock: FixedClock,
    token: Any,
    store: ComplaintStore,
    exported: InMemorySpanExporter,
) -> None:
    assert settings.otlp_endpoint is None
    app, gateway, created = await accept_and_dispatch(settings, clock, token, store)
    assert created.status_code == 201
    assert app.state.tracer_provider is None
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert exported.get_finished_spans() == ()
    [headers] = gateway.headers
    assert "traceparent" not in headers  # nothing read from the request, nothing passed on


async def test_a_webhook_carries_the_trace_of_the_request_that_stored_its_event(
    settings: Settings,
    clock: FixedClock,
    token: Any,
    store: ComplaintStore,
    exported: InMemorySpanExporter,
) -> None:
    traced = settings.model_copy(
        update={"otlp_endpoint": "http://127.0.0.1:4318", "webhook_local_urls": True}
    )
    app = create_app(traced, clock=clock)
    receiver = Gateway()
    async with serving(app, token) as api:
        subscribed = await api.client.post(
            "/subscriptions",
            json={
                "url": "http://receiver.test/hooks?key=s3cret",
                "event_types": ["Complaint.Accepted"],
            },
            headers=api.headers("admin"),
        )
        assert subscribed.status_code == 201, subscribed.text
        created = await api.accept(intake_body(), traceparent=TRACEPARENT)
        assert created.status_code == 201
        await catch_up(store, SummaryProjection(store), ChainProjection(), WebhookProjection(clock))
        plain = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
        async with tracing.trace_client(app, plain) as client:
            sender = WebhookSender(
                store, client, clock=clock, backoff_seconds=2, backoff_max_seconds=60,
                max_attempts=3, local_allowed=True, traced=True,
            )  # fmt: skip
            assert await sender.send_once() == 1
    [headers] = receiver.headers
    assert headers["webhook-id"]  # the webhook itself
    assert headers["traceparent"].split("-")[1] == TRACE_ID
    app.state.tracer_provider.force_flush()
    clients = [s for s in exported.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert clients  # the POST is traced, without the receiver URL's query (its key)
    for span in clients:
        assert "s3cret" not in str(dict(span.attributes or {}))


async def test_no_span_keeps_a_query_string_and_its_personal_data(
    settings: Settings,
    clock: FixedClock,
    token: Any,
    store: ComplaintStore,
    exported: InMemorySpanExporter,
) -> None:
    """A list filtered by phone number: the server span has the route and path, never the
    query (the phone number, the customer id)."""
    traced = settings.model_copy(update={"otlp_endpoint": "http://127.0.0.1:4318"})
    app = create_app(traced, clock=clock)
    async with serving(app, token) as api:
        listed = await api.get("/complaints", "supervisor", phone="13800138000", customer_id="c-9")
        assert listed.status_code == 200
    app.state.tracer_provider.force_flush()
    spans = exported.get_finished_spans()
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server.attributes is not None and server.attributes["http.route"] == "/complaints"
    for span in spans:
        for key, value in (span.attributes or {}).items():
            assert "13800138000" not in str(value) and "c-9" not in str(value), (key, value)
