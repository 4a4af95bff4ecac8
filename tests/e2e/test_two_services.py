"""Real uvicorn processes on one PostgreSQL store: write through intake, read through another."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest

from shared.audit.checkpoints import load_key
from tests.conftest import AUDIT_KEY, TEST_SECRET, intake_body
from tests.postgres import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def service(name: str, env: dict[str, str]) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            f"services.{name}.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"{name} exited: {output}")
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def store_env(postgres_admin_url: str) -> Iterator[dict[str, str]]:
    url = create_database(postgres_admin_url)
    load_key(AUDIT_KEY, create=True)
    env = {
        **os.environ,
        "COMPLAINTS_DATABASE_URL": url,
        "COMPLAINTS_JWT_SECRET": TEST_SECRET,
        "COMPLAINTS_AUDIT_KEY_PATH": str(AUDIT_KEY),
        "COMPLAINTS_PROJECTOR_LEASE_SECONDS": "2",
    }
    subprocess.run(
        [sys.executable, "-m", "shared.cli.setup_store"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    yield env
    drop_database(postgres_admin_url, url)


def test_accepted_through_intake_is_read_through_investigation(
    store_env: dict[str, str],
) -> None:
    agent = subprocess.run(
        [sys.executable, "-m", "shared.cli.token", "--roles", "agent", "--sub", "agent-e2e"],
        cwd=ROOT,
        env=store_env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    auth = {"Authorization": f"Bearer {agent}"}
    with service("intake", store_env) as intake, service("investigation", store_env) as other:
        created = httpx.post(
            f"{intake}/complaints", json=intake_body(), headers={**auth, "Idempotency-Key": "e2e"}
        )
        assert created.status_code == 201, created.text
        complaint = created.json()

        read = httpx.get(f"{other}/complaints/{complaint['id']}", headers=auth)
        assert read.status_code == 200
        assert read.json()["version"] == complaint["version"] == 1
        assert read.headers["ETag"] == created.headers["ETag"]
        assert read.json()["acceptance_no"] == complaint["acceptance_no"]

        history = httpx.get(f"{other}/complaints/{complaint['id']}/history", headers=auth)
        assert [e["type"] for e in history.json()["events"]] == ["Accepted"]

        # The retry lands on the other process's table too: same answer, nothing new.
        retry = httpx.post(
            f"{intake}/complaints", json=intake_body(), headers={**auth, "Idempotency-Key": "e2e"}
        )
        assert retry.json() == complaint
        assert httpx.get(f"{other}/ready").json()["position"] == 3
