"""The metrics an operator alerts on, as `/metrics` shows them (README: Operations, metrics)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from services.escalation.main import create_app as create_escalation_app
from services.escalation.watch import DeadlineWatch
from services.intake.main import create_app as create_intake_app
from services.investigation.main import create_app as create_investigation_app
from shared.domain.clock import FixedClock
from shared.domain.context import Actor, CommandContext
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from tests.conftest import TokenFactory, intake_body
from tests.integration.conftest import Api, catch_up, serving
from tests.integration.test_audit import REFUSAL
from tests.integration.test_notifications import _replied, dispatcher


async def scrape(api: Api) -> dict[str, Any]:
    """The families `/metrics` answers, by name."""
    answer = await api.client.get("/metrics")
    assert answer.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(answer.text)}


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    """The samples `name` (a counter's `_total`, a histogram's `_count`) with these labels,
    summed; 0 if absent."""
    return sum(
        s.value
        for family in families.values()
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
async def held(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> AsyncIterator[tuple[Api, FastAPI]]:
    """Intake with its projector held back (tests move the projections themselves)."""
    app = create_intake_app(settings.model_copy(update={"projector_enabled": False}), clock=clock)
    async with serving(app, token) as client:
        yield client, app


async def test_an_event_is_counted_by_type_and_service(api: Api) -> None:
    before = await scrape(api)
    assert (await api.accept(intake_body())).status_code == 201
    after = await scrape(api)
    name = "complaints_events_appended_total"
    labels = {"type": "Accepted", "service": "intake"}
    assert value(after, name, **labels) == value(before, name, **labels) + 1
    # The store's round trips are timed, by operation.
    assert value(after, "complaints_store_call_seconds_count", operation="accept") >= 1


async def test_replays_and_key_reuse_are_counted_on_their_route(api: Api) -> None:
    headers = api.headers("agent", "agent-3", **{"Idempotency-Key": "k-metrics"})
    first = await api.client.post("/complaints", json=intake_body(), headers=headers)
    again = await api.client.post("/complaints", json=intake_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    families = await scrape(api)
    assert value(families, "complaints_idempotency_replays_total", service="intake") == 1
    requests = "complaints_http_requests_total"
    assert value(families, requests, route="/complaints", status="201", method="POST") == 2
    assert value(families, requests, route="unmatched") == 0

    other = intake_body(description="另一件事")
    reused = await api.client.post("/complaints", json=other, headers=headers)
    assert reused.status_code == 422
    not_json = await api.client.post(
        "/complaints", content=b"x=1", headers={**headers, "Content-Type": "text/plain"}
    )
    assert not_json.status_code == 415
    # A replay of a command on a complaint: counted on the route's template, not its path.
    cid = first.json()["id"]
    keyed = api.headers("agent", "agent-3", **{"Idempotency-Key": "k-refusal"})
    path = f"/complaints/{cid}/refusal"
    for _ in range(2):
        assert (await api.client.post(path, json=REFUSAL, headers=keyed)).status_code == 200
    families = await scrape(api)
    assert value(families, "complaints_idempotency_replays_total", service="intake") == 2
    template = "/complaints/{complaint_id}/refusal"
    assert value(families, requests, route=template, status="200") == 2
    assert value(families, "complaints_idempotency_conflicts_total", service="intake") == 1
    assert value(families, requests, route="/complaints", status="422") == 1
    assert value(families, requests, route="/complaints", status="415") == 1
    assert value(families, requests, route="unmatched") == 0
    for sample in families["complaints_http_requests"].samples:
        assert cid not in sample.labels["route"]


async def test_a_throttled_request_is_counted(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    limited = settings.model_copy(update={"rate_limit_per_second": 0.1, "rate_limit_burst": 2})
    async with serving(create_intake_app(limited, clock=clock), token) as tight:
        codes = [
            (await tight.client.get("/complaints", headers=tight.headers())).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]
        families = await scrape(tight)
    assert value(families, "complaints_rate_limited_requests_total", service="intake") == 1
    requests = "complaints_http_requests_total"
    assert value(families, requests, route="/complaints", status="429", method="GET") == 1


async def test_projection_lag_in_events_and_seconds(held: tuple[Api, FastAPI]) -> None:
    api, app = held
    store = app.state.store
    projections = app.state.projector.projections
    await catch_up(store, *projections)
    families = await scrape(api)
    for projection in projections:
        assert value(families, "complaints_projection_lag_events", projection=projection.name) == 0
        assert value(families, "complaints_projection_lag_seconds", projection=projection.name) == 0
    app.state.clock.advance(timedelta(seconds=5))  # (the event's time, not the process's)
    await api.accept(intake_body())
    app.state.clock.advance(timedelta(seconds=30))
    families = await scrape(api)
    ready = (await api.client.get("/ready")).json()["projections"]
    for projection in projections:
        lag = value(families, "complaints_projection_lag_events", projection=projection.name)
        assert lag > 0
        assert lag == ready[projection.name]["lag"]  # the same figure /ready answers
        waited = value(families, "complaints_projection_lag_seconds", projection=projection.name)
        assert waited == 30
    await catch_up(store, *projections)
    families = await scrape(api)
    for projection in projections:
        assert value(families, "complaints_projection_lag_events", projection=projection.name) == 0


async def test_the_deadline_watch_counts_missed_limits_and_escalations(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    app = create_escalation_app(
        settings.model_copy(update={"deadline_watch_enabled": False}), clock=clock
    )
    async with serving(app, token) as esc:
        store = app.state.store
        ctx = CommandContext(Actor("agent-1", "agent"), "intake", clock(), "hotline")
        await store.accept(intake_body(), ctx)
        await catch_up(store, SummaryProjection(store))
        clock.advance(timedelta(days=4))  # its limits have passed
        watch = DeadlineWatch(store, clock=clock)
        assert await watch.watch_once() >= 1
        families = await scrape(esc)
    assert value(families, "complaints_deadline_watch_runs_total") == 1
    assert value(families, "complaints_limits_missed_total") >= 1
    assert value(families, "complaints_escalations_raised_total") >= 1
    assert value(families, "complaints_events_appended_total", service="escalation") >= 1


async def test_the_outbox_with_a_failing_gateway(
    api: Api, settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    from devtools.gateway import create_app as create_gateway

    gateway = create_gateway()
    app = create_investigation_app(
        settings.model_copy(update={"dispatcher_enabled": False, "projector_enabled": False}),
        clock=clock,
    )
    async with serving(app, token) as inv:
        store = app.state.store
        await _replied(api, inv)
        await catch_up(store, SummaryProjection(store))
        clock.advance(timedelta(minutes=2))
        families = await scrape(inv)
        assert value(families, "complaints_notifications", status="pending") == 2
        assert value(families, "complaints_notifications_oldest_pending_seconds") >= 120
        sender = dispatcher(store, gateway, clock)
        gateway.state.down = True
        assert await sender.dispatch_once() == 0
        families = await scrape(inv)
        assert value(families, "complaints_notifications_failed_total", final="false") == 2
        gateway.state.down = False
        gateway.state.reject = True  # refused: failed for good
        clock.advance(timedelta(minutes=10))
        await catch_up(store, SummaryProjection(store))
        assert await sender.dispatch_once() == 0
        await catch_up(store, SummaryProjection(store))
        families = await scrape(inv)
    assert value(families, "complaints_notifications_failed_total", final="true") == 2
    assert value(families, "complaints_notifications", status="failed") == 2
    assert value(families, "complaints_notifications", status="pending") == 0
    assert value(families, "complaints_notifications_oldest_pending_seconds") == 0
    assert value(families, "complaints_notifications_sent_total") == 0


async def test_the_checkpoint_lag_is_how_long_unsigned_events_have_waited(
    held: tuple[Api, FastAPI],
) -> None:
    api, app = held
    clock = app.state.clock
    assert value(await scrape(api), "complaints_checkpoint_lag_seconds") == 0  # nothing yet
    await api.accept(intake_body())
    await catch_up(app.state.store, *app.state.projector.projections)
    clock.advance(timedelta(seconds=90))
    assert value(await scrape(api), "complaints_checkpoint_lag_seconds") == 90  # not signed
    assert await app.state.checkpoints.sign_head(clock()) is not None
    clock.advance(timedelta(hours=8))  # a quiet night: the head is signed, nothing waits
    assert value(await scrape(api), "complaints_checkpoint_lag_seconds") == 0


async def test_every_metric_is_named_for_the_platform_and_explained(api: Api) -> None:
    await api.accept(intake_body())
    families = await scrape(api)
    assert "complaints_db_pool_in_use" in families or "complaints_store_calls_in_flight" in families
    assert any(name.startswith("process_") for name in families)
    assert any(name.startswith("python_gc") for name in families)
    for name, family in families.items():
        if name.startswith(("process_", "python_")):
            continue
        assert name.startswith("complaints_"), name
        assert family.documentation.strip(), name


# -- a port of its own for the metrics (COMPLAINTS_METRICS_PORT) ---------------------------
#: The metrics port of these tests. The ASGI scope's `server` is the port a request came in
#: on; httpx's ASGI transport puts the URL's there.
METRICS_PORT = 9100


@asynccontextmanager
async def with_metrics_port(app: FastAPI, token: TokenFactory) -> AsyncIterator[tuple[Api, Api]]:
    """A client on the API's port and one on the metrics port, of one app (one lifespan)."""
    async with serving(app, token) as api:
        # the same peer as `api`: what limits its address does not limit the metrics port
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))
        base_url = f"http://testserver:{METRICS_PORT}"
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield api, Api(client, token)


async def test_with_a_metrics_port_the_metrics_are_served_there_and_only_there(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    apart = settings.model_copy(update={"metrics_port": METRICS_PORT})
    async with with_metrics_port(create_intake_app(apart, clock=clock), token) as (api, port):
        assert (await api.accept(intake_body())).status_code == 201
        families = await scrape(port)
        assert value(families, "complaints_events_appended_total", type="Accepted") == 1
        assert "complaints_http_requests" in families

        # The API's port: no /metrics (answered as a path it does not have), the rest as ever.
        hidden = await api.client.get("/metrics")
        unknown = await api.client.get("/no-such-path")
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.headers["content-type"] == "application/problem+json"
        assert {k: v for k, v in hidden.json().items() if k != "instance"} == {
            k: v for k, v in unknown.json().items() if k != "instance"
        }
        assert (await api.client.get("/health")).status_code == 200
        assert (await api.client.get("/ready")).status_code == 200

        # The metrics port: nothing but /metrics, whatever the token.
        for path in ("/health", "/ready", "/complaints", "/docs", "/openapi.json", "/console/"):
            answer = await port.client.get(path, headers=port.headers("admin"))
            assert answer.status_code == 404, path
            assert answer.json()["title"] == "Not found", path
        refused = await port.client.post(
            "/complaints", json=intake_body(), headers=port.headers("agent")
        )
        assert refused.status_code == 404

        families = await scrape(port)
    # Every answer is counted, the refused ones on the route they named.
    requests = "complaints_http_requests_total"
    assert value(families, requests, route="/metrics", status="200") == 1  # (the first scrape)
    assert value(families, requests, route="/metrics", status="404") == 1
    assert value(families, requests, route="/complaints", method="POST", status="404") == 1
    assert value(families, requests, route="/complaints", method="POST", status="201") == 1
    # the refused command appended nothing
    assert value(families, "complaints_events_appended_total", type="Accepted") == 1


async def test_the_metrics_port_meets_no_rate_limit(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    tight = settings.model_copy(
        update={"metrics_port": METRICS_PORT, "rate_limit_per_second": 0.1, "rate_limit_burst": 2}
    )
    async with with_metrics_port(create_intake_app(tight, clock=clock), token) as (api, port):
        codes = [(await api.client.get("/no-such-path")).status_code for _ in range(3)]
        assert codes == [404, 404, 429]  # the API's clients are limited (by address here)
        for _ in range(4):
            await scrape(port)  # (200 each time)
        # what the metrics port refuses is refused before the limits: 404, never 429
        assert [(await port.client.get("/no-such-path")).status_code for _ in range(3)] == [404] * 3
        families = await scrape(port)
    assert value(families, "complaints_rate_limited_requests_total") == 1
