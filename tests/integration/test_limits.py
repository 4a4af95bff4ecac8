"""Abuse limits: requests per client, with 429 and Retry-After beyond them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from ipaddress import ip_network

import pytest
from pydantic import ValidationError

from services.intake.main import create_app
from shared.domain.clock import FixedClock
from shared.settings import Settings
from tests.conftest import TokenFactory, intake_body
from tests.integration.conftest import Api, serving

BURST = 3


@pytest.fixture
async def tight(settings: Settings, clock: FixedClock, token: TokenFactory) -> AsyncIterator[Api]:
    """Intake allowing three requests at once per client, then one each ten seconds (a window
    long enough that a slow machine cannot slip a request past it)."""
    limited = settings.model_copy(update={"rate_limit_per_second": 0.1, "rate_limit_burst": BURST})
    async with serving(create_app(limited, clock=clock), token) as client:
        yield client


async def test_a_client_beyond_its_burst_is_told_when_to_retry(tight: Api) -> None:
    answers = [
        await tight.client.get("/complaints", headers=tight.headers("agent", "agent-7"))
        for _ in range(BURST + 1)
    ]
    assert [a.status_code for a in answers] == [200] * BURST + [429]
    throttled = answers[-1]
    assert throttled.headers["content-type"] == "application/problem+json"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 30
    # Another client, and the ops probes, are not held back by this one.
    other = await tight.client.get("/complaints", headers=tight.headers("agent", "agent-8"))
    assert other.status_code == 200
    assert (await tight.client.get("/health")).status_code == 200


async def test_a_throttled_command_stores_nothing_and_keeps_its_key_free(
    tight: Api, api: Api
) -> None:
    headers = tight.headers("agent", "agent-9", **{"Idempotency-Key": "k-429"})
    for _ in range(BURST):
        await tight.client.get("/complaints", headers=headers)
    throttled = await tight.client.post("/complaints", json=intake_body(), headers=headers)
    assert throttled.status_code == 429
    # The same key through an unthrottled process: accepted now, and only once.
    first = await api.client.post("/complaints", json=intake_body(), headers=headers)
    again = await api.client.post("/complaints", json=intake_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    listed = await api.get("/complaints", customer_id="cust-1", min_position="1")
    assert len(listed.json()["items"]) == 1


async def test_requests_without_a_token_are_limited_by_address(tight: Api) -> None:
    codes = [(await tight.client.get("/complaints")).status_code for _ in range(BURST + 1)]
    assert codes == [401] * BURST + [429]


def behind(settings: Settings, *proxies: str) -> Settings:
    """The tight limits, with these proxies trusted to say who their clients are."""
    return settings.model_copy(
        update={
            "rate_limit_per_second": 0.1,
            "rate_limit_burst": BURST,
            "trusted_proxies": [ip_network(p) for p in proxies],
        }
    )


async def test_a_forged_x_forwarded_for_from_an_untrusted_peer_changes_no_address(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    app = create_app(behind(settings, "10.0.0.0/8"), clock=clock)
    async with serving(app, token, peer="203.0.113.7") as direct:
        codes = [
            (
                await direct.client.get(
                    "/complaints", headers={"X-Forwarded-For": f"198.51.100.{n}"}
                )
            ).status_code
            for n in range(BURST + 1)
        ]
    # A new address forged on every request, and still one client: 203.0.113.7.
    assert codes == [401] * BURST + [429]


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    app = create_app(behind(settings, "10.0.0.0/8", "192.168.1.5"), clock=clock)
    async with serving(app, token, peer="10.1.2.3") as proxied:
        one = {"X-Forwarded-For": "198.51.100.1"}
        codes = [
            (await proxied.client.get("/complaints", headers=one)).status_code
            for _ in range(BURST + 1)
        ]
        # Another client through the same proxy (and another proxy in the chain) is not held.
        other = {"X-Forwarded-For": "198.51.100.2, 192.168.1.5"}
        assert (await proxied.client.get("/complaints", headers=other)).status_code == 401
    assert codes == [401] * BURST + [429]


@pytest.mark.parametrize(("rate", "burst"), [(30.0, 100), (500.0, 200), (100.0, 50)])
def test_limits_the_limiter_cannot_keep_exactly_are_refused_at_start(
    rate: float, burst: int
) -> None:
    with pytest.raises(ValidationError, match="whole number of seconds"):
        Settings(rate_limit_per_second=rate, rate_limit_burst=burst)
