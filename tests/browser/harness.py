"""What the browser tests stand on: Chromium from the distribution, a guard that keeps every page
on the services under test, and screenshots a person can look at.

Chromium is the distribution's package (`apt-get install chromium`), never a download of
Playwright's own (`playwright install` is not run). Playwright drives it by `executable_path`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Request, Route, WebSocketRoute

#: Where the distribution puts Chromium (Debian: chromium; older Ubuntu: chromium-browser).
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
#: A font with the Chinese characters: without one the console's screenshots show boxes.
CJK_FONT_PACKAGE = "fonts-noto-cjk"
#: Where the screenshots go (git-ignored): one folder per test, files in the order taken.
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


class Screenshot(Protocol):
    """The `screenshot` fixture: `screenshot(page, "label")` saves the page (all of it, or with
    `full_page=False` the viewport only), returns the file."""

    def __call__(self, page: Page, label: str, *, full_page: bool = True) -> Path: ...


class NewPage(Protocol):
    """The `new_page` fixture: a page in a context of its own, with these context options."""

    def __call__(self, **context_options: Any) -> Page: ...


def find_chromium() -> str | None:
    """The distribution's Chromium, if installed."""
    for path in CHROMIUM_PATHS:
        if os.access(path, os.X_OK):
            return path
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def has_cjk_font() -> bool:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False
    listed = subprocess.run([fc_list, ":lang=zh", "family"], capture_output=True, text=True)
    return bool(listed.stdout.strip())


def apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    """apt-get without questions, as root or through sudo (as the Makefile's SUDO does)."""
    command = ["apt-get", *args]
    if os.geteuid() != 0:
        command = ["sudo", "DEBIAN_FRONTEND=noninteractive", *command]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, env=env, capture_output=True, text=True)


def ensure_chromium() -> str:
    """The path of the distribution's Chromium, installed with apt first when missing (and a
    Chinese font, for the screenshots); stops the run with one message if that cannot be done."""
    if find_chromium() is None:
        done = apt_install("chromium")
        if done.returncode != 0:
            pytest.exit(_cannot_install(done.stderr.strip()[-2000:]), returncode=3)
    if not has_cjk_font() and apt_install(CJK_FONT_PACKAGE).returncode != 0:
        warnings.warn(f"no {CJK_FONT_PACKAGE}: Chinese is boxes in screenshots", stacklevel=1)
    path = find_chromium()
    if path is None:
        pytest.exit(_cannot_install("installed, but not found"), returncode=3)
    return path


def apt_install(package: str) -> subprocess.CompletedProcess[str]:
    """`apt-get install` the package, after `apt-get update` if the first try fails (a fresh
    machine's package lists may be missing or stale)."""
    if shutil.which("apt-get") is None or (os.geteuid() != 0 and shutil.which("sudo") is None):
        return subprocess.CompletedProcess([], returncode=1, stdout="", stderr="no apt-get or sudo")
    install = ("install", "-y", "-q", "--no-install-recommends", package)
    done = apt_get(*install)
    if done.returncode != 0:
        apt_get("update", "-q")
        done = apt_get(*install)
    return done


def _cannot_install(why: str) -> str:
    return (
        f"The browser tests need Chromium from the distribution and could not install it ({why})."
        " Install it with `sudo apt-get install chromium` and run the tests again."
    )


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class HostGuard:
    """Lets a browser context reach the services under test and nothing else: every other
    request (and WebSocket) is aborted before it leaves the browser, and recorded.

    `allowed` is asked at each request for the origins in use (the running service processes,
    plus any given to `allow`); the `blocked` fixture fails the test if `attempts` is not empty
    at its end. A test that means to provoke an attempt takes it with `take()`."""

    def __init__(self, allowed: Callable[[], Iterable[str]]) -> None:
        self._allowed = allowed
        self._extra: set[str] = set()
        #: The URLs refused, in order ("GET https://cdn.example/x.js").
        self.attempts: list[str] = []
        #: Uncaught script errors of the pages (a page whose scripts break fails its test too).
        self.page_errors: list[str] = []

    def allow(self, url: str) -> None:
        """Let the pages reach this origin too (e.g. a process the fixtures do not know)."""
        self._extra.add(origin(url))

    def allows(self, url: str) -> bool:
        if urlsplit(url).scheme in {"data", "blob", "about"}:
            return True  # not a request to any host
        return origin(url) in {*map(origin, self._allowed()), *self._extra}

    def route(self, route: Route, request: Request) -> None:
        if self.allows(request.url):
            route.fallback()
        else:
            self.attempts.append(f"{request.method} {request.url}")
            route.abort("blockedbyclient")

    def route_web_socket(self, socket: WebSocketRoute) -> None:
        if self.allows(re.sub(r"^ws", "http", socket.url)):
            socket.connect_to_server()
        else:
            self.attempts.append(f"WebSocket {socket.url}")
            socket.close()

    def take(self) -> list[str]:
        """The attempts so far, forgotten (for a test that provokes them on purpose)."""
        taken, self.attempts = self.attempts, []
        return taken

    def take_page_errors(self) -> list[str]:
        taken, self.page_errors = self.page_errors, []
        return taken

    def check(self) -> None:
        """Fails the test if a page tried another host or had an uncaught script error."""
        problems = [f"request to another host: {attempt}" for attempt in self.attempts]
        problems += [f"uncaught script error: {error}" for error in self.page_errors]
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


class Screenshots:
    """Full-page PNGs of one test, numbered in the order taken, in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken: list[Path] = []
        shutil.rmtree(folder, ignore_errors=True)  # only this run's pictures of this test

    def __call__(self, page: Page, label: str, *, full_page: bool = True) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "-", label).strip("-") or "page"
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=path, full_page=full_page)
        self.taken.append(path)
        return path


def screenshot_folder(nodeid: str) -> Path:
    """tests/browser/test_docs.py::test_x[a] → screenshots/test_docs/test_x-a"""
    module, _, name = nodeid.partition("::")
    return SCREENSHOTS / Path(module).stem / re.sub(r"[^\w.-]+", "-", name).strip("-")
