"""Real service processes for the end-to-end tests: uvicorn as in production, logs to files."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.audit.checkpoints import load_key
from shared.cli.run import free_port, service_command, stop_process, wait_ready
from shared.store.keystore import KekFile
from tests.conftest import AUDIT_KEY, KEK_FILE, TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]
#: The uvicorn process behind each running service's URL.
PROCESSES: dict[str, subprocess.Popen[bytes]] = {}


def log_file(name: str) -> Path:
    """A file for a process's logs, kept after the test for a look at what went wrong."""
    descriptor, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
    os.close(descriptor)
    return Path(path)


#: Where each running service's logs go (a file: a pipe nobody reads would fill and block it).
LOGS: dict[str, Path] = {}


@contextmanager
def service(
    name: str, env: dict[str, str], log_level: str = "warning", port: int | None = None
) -> Iterator[str]:
    """A uvicorn process of the service, logging as in production (JSON, shared/logging.json);
    on `port` when the others must know it beforehand (the console's service URLs)."""
    port = port or free_port()
    log_path = log_file(name)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            service_command(name, port, log_level=log_level),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    PROCESSES[url] = process
    LOGS[url] = log_path
    try:
        if not wait_ready(port, process, timeout=30):
            if process.poll() is not None:
                pytest.fail(f"{name} exited: {log_path.read_text(errors='replace')}")
            pytest.fail(f"{name} did not become ready")
        yield url
    finally:
        PROCESSES.pop(url, None)
        stop_process(process)


@contextmanager
def gateway(env: dict[str, str]) -> Iterator[str]:
    """The local SMS/e-mail gateway and webhook receiver of `make run` (devtools.gateway)."""
    port = free_port()
    log_path = log_file("gateway")
    command = [sys.executable, "-m", "uvicorn", "devtools.gateway:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/messages", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the gateway did not start: {log_path.read_text()}")
                time.sleep(0.1)
        yield url
    finally:
        stop_process(process)


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a test's service processes: its store and the test keys."""
    load_key(AUDIT_KEY, create=True)
    KekFile.load(KEK_FILE, create=True)
    return {
        **os.environ,
        "COMPLAINTS_DATABASE_URL": database_url,
        "COMPLAINTS_JWT_SECRET": TEST_SECRET,
        "COMPLAINTS_INDEX_KEY": "test-index-key-0123456789",
        "COMPLAINTS_AUDIT_KEY_PATH": str(AUDIT_KEY),
        "COMPLAINTS_KEK_PATH": str(KEK_FILE),
        **extra,
    }


def cli(env: dict[str, str], command: str, *args: str) -> str:
    """One of the project's commands (`python -m shared.cli.<command>`); returns its output."""
    return subprocess.run(
        [sys.executable, "-m", f"shared.cli.{command}", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def setup_store(env: dict[str, str]) -> None:
    """`make setup` for that store: the event tables and our migrated ones."""
    cli(env, "setup_store")


def token(env: dict[str, str], roles: str, sub: str) -> str:
    """A JWT minted by the project's own command, as an operator would."""
    return cli(env, "token", "--roles", roles, "--sub", sub)
