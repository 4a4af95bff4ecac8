"""/docs and /redoc of a real service process in headless Chromium: both render the whole API
from the service's own files, with no request to any other host (they work offline)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.harness import HostGuard, Screenshot
from tests.e2e.processes import service

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def intake(sqlite_store_env: dict[str, str]) -> Iterator[str]:
    with service("intake", sqlite_store_env) as url:
        yield url


@pytest.fixture(scope="module")
def operations(intake: str) -> list[tuple[str, str]]:
    """(tag, operation id) of each operation under each of its tags, as both pages list them."""
    document = httpx.get(f"{intake}/openapi.json").json()
    return [
        (tag, operation["operationId"])
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in METHODS
        for tag in operation.get("tags", ["default"])
    ]


def requested_from(page: Page) -> list[str]:
    """The URLs the page asks for from now on (the guard sees the refused ones)."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


def test_swagger_ui_shows_every_operation_with_nothing_from_another_host(
    intake: str,
    operations: list[tuple[str, str]],
    page: Page,
    blocked: HostGuard,
    screenshot: Screenshot,
) -> None:
    requested = requested_from(page)
    page.goto(f"{intake}/docs")

    expect(page.locator(".opblock")).to_have_count(len(operations))
    for tag, operation_id in operations:
        expect(page.locator(f'[id="operations-{tag}-{operation_id}"]')).to_be_visible()
    assert ("intake", "accept_complaint") in operations
    screenshot(page, "swagger-ui")

    # An operation opens with its request body's example and its documented answers.
    accept = page.locator('[id="operations-intake-accept_complaint"]')
    accept.locator(".opblock-summary").click()
    expect(accept.locator(".responses-table")).to_be_visible()
    expect(accept.get_by_text("Idempotency-Key").first).to_be_visible()
    screenshot(page, "swagger-ui-accept-complaint")

    assert f"{intake}/docs-assets/swagger-ui-bundle.js" in requested
    assert f"{intake}/openapi.json" in requested
    assert blocked.attempts == []


def test_redoc_shows_every_operation_with_nothing_from_another_host(
    intake: str,
    operations: list[tuple[str, str]],
    page: Page,
    blocked: HostGuard,
    screenshot: Screenshot,
) -> None:
    requested = requested_from(page)
    page.goto(f"{intake}/redoc")

    sections = page.locator('[data-section-id*="/operation/"]')
    expect(sections).to_have_count(len(operations))
    for tag, operation_id in operations:
        section = page.locator(f'[data-section-id="tag/{tag}/operation/{operation_id}"]')
        expect(section).to_have_count(1)
    expect(
        page.locator('[data-section-id="tag/intake/operation/accept_complaint"] h2')
    ).to_be_visible()
    screenshot(page, "redoc", full_page=False)  # the whole of it is many screens long

    assert f"{intake}/docs-assets/redoc.standalone.js" in requested
    assert f"{intake}/openapi.json" in requested
    assert blocked.attempts == []


def test_a_request_to_another_host_is_refused_and_reported(
    intake: str, page: Page, blocked: HostGuard, screenshot: Screenshot
) -> None:
    failures: dict[str, str | None] = {}
    page.on("requestfailed", lambda request: failures.update({request.url: request.failure}))
    page.set_content(
        '<img id="outside" src="https://example.com/x.png">'
        '<script src="http://cdn.example.net/lib.js"></script>'
        f'<img id="ours" src="{intake}/docs-assets/favicon.png">'
    )
    fetched = page.evaluate(
        "fetch('https://fonts.example.org/css').then(() => 'answered', () => 'refused')"
    )
    socket = page.evaluate(
        """new Promise(done => {
            const socket = new WebSocket('wss://example.com/socket');
            socket.onopen = () => done('open');
            socket.onclose = () => done('closed');
        })"""
    )
    screenshot(page, "outside-requests")

    assert sorted(blocked.take()) == [
        "GET http://cdn.example.net/lib.js",
        "GET https://example.com/x.png",
        "GET https://fonts.example.org/css",
        "WebSocket wss://example.com/socket",
    ]
    assert (fetched, socket) == ("refused", "closed")
    assert str(failures["https://example.com/x.png"]).startswith("net::ERR_BLOCKED_BY_CLIENT")
    # The service under test is reached: its picture loads, the outside one does not.
    widths = page.evaluate(
        "['outside', 'ours'].map(id => document.getElementById(id).naturalWidth)"
    )
    assert widths[0] == 0 and widths[1] > 0

    # Left unanswered, an attempt fails the test at its end (the fixture calls check()).
    page.evaluate("fetch('https://example.com/late').catch(() => null)")
    with pytest.raises(
        pytest.fail.Exception, match=re.escape("another host: GET https://example.com/late")
    ):
        blocked.check()
    assert blocked.take() == ["GET https://example.com/late"]


def test_an_uncaught_script_error_is_reported(page: Page, blocked: HostGuard) -> None:
    with page.expect_event("pageerror"):
        page.set_content("<script>throw new Error('boom')</script>")
    with pytest.raises(pytest.fail.Exception, match=r"uncaught script error: .*boom"):
        blocked.check()
    assert len(blocked.take_page_errors()) == 1
