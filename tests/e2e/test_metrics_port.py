"""A real service process with `COMPLAINTS_METRICS_PORT`: one process listening on two ports,
`/metrics` on the metrics port alone and the API (and its probes) on the other."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.cli.run import free_port
from tests.e2e.processes import service

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(60)]


def test_the_metrics_are_served_on_a_port_of_their_own(store_env: dict[str, str]) -> None:
    metrics_port = free_port()
    env = {**store_env, "COMPLAINTS_METRICS_PORT": str(metrics_port)}
    with service("intake", env) as url:  # (ready: its /ready answered 200 on the API's port)
        metrics = f"http://127.0.0.1:{metrics_port}"
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.get(f"{url}/metrics").status_code == 404
        for path in ("/health", "/ready", "/complaints", "/docs"):
            assert httpx.get(f"{metrics}{path}").status_code == 404, path
        scraped = httpx.get(f"{metrics}/metrics")
    assert scraped.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    # one process: the scrape counts what the API's port answered
    answered = {
        (s.labels["route"], s.labels["status"])
        for s in families["complaints_http_requests"].samples
        if s.name == "complaints_http_requests_total"
    }
    assert {("/ready", "200"), ("/health", "200"), ("/metrics", "404")} <= answered
