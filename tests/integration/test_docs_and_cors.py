"""The documentation pages work offline; browser pages on allowed origins may call the API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest
from fastapi import APIRouter

from services.intake.main import create_app
from shared.domain.clock import FixedClock
from shared.domain.codes import Service
from shared.http.app import create_service_app
from shared.settings import Settings
from tests.conftest import TokenFactory, intake_body
from tests.integration.conftest import Api, serving

FRONTEND = "https://desk.example.com"
ELSEWHERE = "https://evil.example.net"
#: What a browser page on the frontend's origin sends with its commands.
SENT_HEADERS = ["authorization", "content-type", "idempotency-key", "if-match", "x-request-id"]
#: What it must be able to read back.
READ_HEADERS = {"etag", "location", "idempotent-replayed", "event-position", "retry-after"}
ASSET_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


def _referenced(html: str) -> list[str]:
    """Every URL a documentation page loads: scripts, styles, icon, the OpenAPI document."""
    attributes = re.findall(r'(?:src|href|spec-url)="([^"]+)"', html)
    swagger_spec = re.findall(r"url: '([^']+)'", html)
    return attributes + swagger_spec


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_everything_from_the_service(api: Api, page: str) -> None:
    response = await api.client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert re.search(r"https?://|//[a-z]", response.text) is None, response.text
    urls = _referenced(response.text)
    assert "/openapi.json" in urls
    assert len(urls) >= 3, urls  # the script, the icon, the OpenAPI (and Swagger's stylesheet)
    for url in urls:
        assert url.startswith("/"), url
        asset = await api.client.get(url)
        assert asset.status_code == 200, url
        expected = ASSET_TYPES[url[url.rindex(".") :]]
        assert asset.headers["content-type"].split(";")[0] == expected, url
        assert len(asset.content) > 4000, url


async def test_swagger_ui_asks_no_online_validator(api: Api) -> None:
    """Its validator badge would be an image from validator.swagger.io, given our URL."""
    html = (await api.client.get("/docs")).text
    assert '"validatorUrl": null' in html


async def test_swagger_ui_oauth2_redirect_is_served(api: Api) -> None:
    html = (await api.client.get("/docs")).text
    redirect = re.search(r"oauth2RedirectUrl: window\.location\.origin \+ '([^']+)'", html)
    assert redirect is not None
    response = await api.client.get(redirect.group(1))
    assert response.status_code == 200
    assert "oauth2" in response.text


async def test_docs_are_not_part_of_the_api(api: Api) -> None:
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if "doc" in path or "redoc" in path]


@pytest.fixture
async def browser(settings: Settings, clock: FixedClock, token: TokenFactory) -> AsyncIterator[Api]:
    """The intake app with the frontend's origin allowed."""
    allowed = settings.model_copy(update={"cors_origins": [FRONTEND]})
    async with serving(create_app(allowed, clock=clock), token) as client:
        yield client


def _preflight(
    origin: str, method: str = "POST", headers: list[str] = SENT_HEADERS
) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": ", ".join(headers),
    }


async def test_a_preflight_from_the_frontend_is_granted(browser: Api) -> None:
    response = await browser.client.options("/complaints", headers=_preflight(FRONTEND))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert "POST" in response.headers["access-control-allow-methods"]
    granted = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert set(SENT_HEADERS) <= granted
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize(
    ("origin", "method", "headers", "refused"),
    [
        (ELSEWHERE, "POST", SENT_HEADERS, "origin"),
        (FRONTEND, "PUT", SENT_HEADERS, "method"),
        (FRONTEND, "POST", ["authorization", "x-forwarded-host"], "headers"),
        (FRONTEND + "/", "GET", [], "origin"),
    ],
)
async def test_other_preflights_are_refused(
    browser: Api, origin: str, method: str, headers: list[str], refused: str
) -> None:
    response = await browser.client.options(
        "/complaints", headers=_preflight(origin, method, headers)
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert refused in detail and "Allowed methods: GET, HEAD, POST" in detail
    if refused == "origin":
        assert "access-control-allow-origin" not in response.headers


async def test_a_command_from_the_frontend_exposes_its_headers(browser: Api) -> None:
    response = await browser.client.post(
        "/complaints",
        json=intake_body(),
        headers=browser.headers(Origin=FRONTEND, **{"Idempotency-Key": "k-1"}),
    )
    assert response.status_code == 201, response.text
    assert response.headers["access-control-allow-origin"] == FRONTEND
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert READ_HEADERS | {"x-request-id"} <= exposed
    assert "etag" in response.headers and "location" in response.headers
    assert "origin" in response.headers["vary"].lower()


async def test_requests_from_other_origins_get_no_grant(browser: Api) -> None:
    response = await browser.client.get("/complaints", headers=browser.headers(Origin=ELSEWHERE))
    assert response.status_code == 200  # the browser, not the API, withholds the answer
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, intake_body(), 401),  # no token
        ({"auth": "yes"}, {"channel": "carrier-pigeon"}, 422),
        ({"auth": "yes", "Content-Type": "text/plain"}, "plain", 415),  # refused by the guard
    ],
)
async def test_problems_reach_the_frontend(
    browser: Api, headers: dict[str, str], body: Any, status: int
) -> None:
    """A page can read why it was refused: problems carry the CORS headers too."""
    sent = {"Origin": FRONTEND, **headers}
    if sent.pop("auth", None):
        sent.update(browser.headers())
    if isinstance(body, str):
        response = await browser.client.post("/complaints", content=body, headers=sent)
    else:
        response = await browser.client.post("/complaints", json=body, headers=sent)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["access-control-allow-origin"] == FRONTEND


async def test_a_failure_on_our_side_reaches_the_frontend(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    """Even the 500 answered for an unexpected error carries the CORS headers."""
    broken = APIRouter()

    @broken.get("/broken")
    async def fail() -> None:
        raise RuntimeError("a bug")

    allowed = settings.model_copy(update={"cors_origins": [FRONTEND]})
    app = create_service_app(allowed, service=Service.INTAKE, routers=[broken], clock=clock)
    async with serving(app, token) as api:
        response = await api.client.get("/broken", headers={"Origin": FRONTEND})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert "x-request-id" in response.headers  # so the page can quote it to support


async def test_preflights_pass_the_rate_limit_and_429s_reach_the_frontend(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    """Three requests in 12 s: preflights count for nothing, and the 429 beyond the limit
    tells the page when to retry."""
    limited = settings.model_copy(
        update={"cors_origins": [FRONTEND], "rate_limit_per_second": 0.25, "rate_limit_burst": 3}
    )
    async with serving(create_app(limited, clock=clock), token) as api:
        for _ in range(5):
            preflight = await api.client.options("/complaints", headers=_preflight(FRONTEND))
            assert preflight.status_code == 200
        answers = [
            await api.client.get("/complaints", headers=api.headers(Origin=FRONTEND))
            for _ in range(4)
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    throttled = answers[-1]
    assert throttled.headers["access-control-allow-origin"] == FRONTEND
    assert "retry-after" in throttled.headers["access-control-expose-headers"].lower()
    assert int(throttled.headers["retry-after"]) >= 1


async def test_cors_is_off_by_default(api: Api) -> None:
    preflight = await api.client.options("/complaints", headers=_preflight(FRONTEND))
    assert "access-control-allow-origin" not in preflight.headers
    answer = await api.client.get("/complaints", headers=api.headers(Origin=FRONTEND))
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ("", []),
        (f"{FRONTEND}, http://localhost:5173", [FRONTEND, "http://localhost:5173"]),
        (f'["{FRONTEND}"]', [FRONTEND]),
        ("*", ["*"]),
    ],
)
def test_origins_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, origins: list[str]
) -> None:
    monkeypatch.setenv("COMPLAINTS_CORS_ORIGINS", value)
    assert Settings(_env_file=None).cors_origins == origins


@pytest.mark.parametrize(
    "value",
    [
        f"{FRONTEND}/",  # a browser's Origin has no path: this would never match
        f"{FRONTEND}/app",
        "https://Desk.example.com",
        "https://desk.example.com:443",
        "desk.example.com",
        "ftp://desk.example.com",
        f"*, {FRONTEND}",
    ],
)
def test_origins_browsers_never_send_are_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("COMPLAINTS_CORS_ORIGINS", value)
    with pytest.raises(pydantic.ValidationError, match="COMPLAINTS_CORS_ORIGINS"):
        Settings(_env_file=None)
