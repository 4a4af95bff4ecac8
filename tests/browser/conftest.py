"""Fixtures of the browser tests: headless Chromium (the distribution's) driven by Playwright's
sync API, pages that cannot reach any host but the services under test, and screenshots.

    pytestmark = [pytest.mark.browser, pytest.mark.e2e]

    @pytest.fixture(scope="module")
    def intake(sqlite_store_env: dict[str, str]) -> Iterator[str]:
        with service("intake", sqlite_store_env) as url:  # tests.e2e.processes
            yield url

    def test_x(intake: str, page: Page, screenshot: Screenshot) -> None:
        page.goto(f"{intake}/console/")
        expect(page.get_by_role("heading")).to_contain_text("投诉")
        screenshot(page, "queue")

One Chromium for the package's tests; each test gets fresh contexts (`page`, or `new_page()` for
a second user), closed at its end after a last screenshot of each open page. The tests here
must be sync: while Playwright's sync API is alive, asyncio counts its loop as running in this
thread, so the browser is closed when the last test of this package has run.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, WebError, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.browser.harness import (
    SCREENSHOTS,
    HostGuard,
    NewPage,
    Screenshot,
    Screenshots,
    ensure_chromium,
    screenshot_folder,
)
from tests.e2e.processes import PROCESSES, service_env, setup_store

#: Every screenshot this run took, for the summary at the end.
TAKEN: list[Path] = []


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """/usr/bin/chromium (apt-get installs it first when it is missing)."""
    return ensure_chromium()


@pytest.fixture(scope="package")
def browser(chromium_executable: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable,
            headless=True,
            # No sandbox (Playwright's default too): as root, or in a container without user
            # namespaces, Chromium's would not start. A small /dev/shm (Docker's 64 MB) crashes
            # tabs, so its shared memory goes to /tmp.
            chromium_sandbox=False,
            args=["--disable-dev-shm-usage"],
        )
        yield browser
        browser.close()


@pytest.fixture
def context_options() -> dict[str, Any]:
    """Every context's options (override in a module): the staff's language and time zone."""
    return {
        "locale": "zh-CN",
        "timezone_id": "Asia/Shanghai",
        "viewport": {"width": 1280, "height": 800},
        "service_workers": "block",  # a service worker's requests would bypass the guard
    }


@pytest.fixture
def blocked() -> Iterator[HostGuard]:
    """The guard of this test's contexts: what they tried to reach elsewhere (`attempts`);
    the test fails at its end if anything is left there or in `page_errors`."""
    guard = HostGuard(allowed=lambda: list(PROCESSES))
    yield guard
    guard.check()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Screenshot:
    """`screenshot(page, "label")`: a full-page PNG in screenshots/<module>/<test>/ here."""
    shots = Screenshots(screenshot_folder(request.node.nodeid))

    def take(page: Page, label: str, *, full_page: bool = True) -> Path:
        path = shots(page, label, full_page=full_page)
        TAKEN.append(path)
        return path

    return take


@pytest.fixture
def new_page(
    browser: Browser,
    blocked: HostGuard,
    context_options: dict[str, Any],
    screenshot: Screenshot,
) -> Iterator[NewPage]:
    """`new_page(**context_options)`: a page in a context of its own (another user's cookies)."""
    contexts = []

    def open_page(**options: Any) -> Page:
        context = browser.new_context(**{**context_options, **options})
        context.route("**/*", blocked.route)
        context.route_web_socket(lambda _url: True, blocked.route_web_socket)
        context.on("weberror", lambda error: _page_error(blocked, error))
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        try:
            for page in context.pages:
                if page.url != "about:blank":
                    screenshot(page, "end", full_page=False)  # as the test left it, failed or not
        except PlaywrightError as error:
            warnings.warn(f"no last screenshot: {error}", stacklevel=1)
        finally:
            context.close()


def _page_error(guard: HostGuard, error: WebError) -> None:
    where = error.page.url if error.page else "?"
    guard.page_errors.append(f"{where}: {error.error}")


@pytest.fixture
def page(new_page: NewPage) -> Page:
    return new_page()


@pytest.fixture(scope="module")
def sqlite_store_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a module's service processes on a fresh SQLite store (as `make run`
    uses); start them with `tests.e2e.processes.service(name, env)` in a module fixture."""
    database = tmp_path_factory.mktemp("store") / "complaints.sqlite3"
    env = service_env(f"sqlite:///{database}")
    setup_store(env)
    return env


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TAKEN:
        where = (
            SCREENSHOTS.relative_to(Path.cwd())
            if SCREENSHOTS.is_relative_to(Path.cwd())
            else SCREENSHOTS
        )
        terminalreporter.write_line(f"browser tests: {len(TAKEN)} screenshots in {where}/")
