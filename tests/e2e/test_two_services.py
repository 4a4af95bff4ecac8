"""Real uvicorn processes on one PostgreSQL store: write through intake, read through another."""

from __future__ import annotations

import os
import signal
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
#: The uvicorn process behind each running service's URL.
PROCESSES: dict[str, subprocess.Popen[bytes]] = {}
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
    PROCESSES[url] = process
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
        PROCESSES.pop(url, None)
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
        "COMPLAINTS_INDEX_KEY": "test-index-key-0123456789",
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


def _leader(urls: dict[str, str]) -> str | None:
    leaders = [
        name
        for name, url in urls.items()
        if httpx.get(f"{url}/ready", timeout=2).json()["projector"] == "leader"
    ]
    assert len(leaders) <= 1, leaders
    return leaders[0] if leaders else None


def _listed(url: str, auth: dict[str, str], acceptance_no: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        page = httpx.get(
            f"{url}/complaints", params={"acceptance_no": acceptance_no}, headers=auth
        ).json()
        if page["items"]:
            return True
        time.sleep(0.05)
    return False


def test_one_projector_runs_and_another_takes_over_when_it_dies(
    store_env: dict[str, str],
) -> None:
    # Polling is slowed to 30 s: only LISTEN/NOTIFY can make new events show up quickly.
    env = {**store_env, "COMPLAINTS_PROJECTOR_POLL_SECONDS": "30"}
    agent = subprocess.run(
        [sys.executable, "-m", "shared.cli.token", "--roles", "agent"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    auth = {"Authorization": f"Bearer {agent}"}
    with service("intake", env) as intake:
        deadline = time.monotonic() + 10
        while _leader({"intake": intake}) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        with service("escalation", env) as escalation:
            assert _leader({"intake": intake, "escalation": escalation}) == "intake"
            first = httpx.post(f"{intake}/complaints", json=intake_body(), headers=auth).json()
            assert _listed(escalation, auth, first["acceptance_no"], within=3), "no NOTIFY"

            PROCESSES[intake].send_signal(signal.SIGKILL)  # the leader dies mid-flight
            PROCESSES[intake].wait(timeout=10)

            # A new intake that never projects: only the standby can list what it accepts.
            quiet = {**env, "COMPLAINTS_PROJECTOR_ENABLED": "false"}
            with service("intake", quiet) as new_intake:
                second = httpx.post(
                    f"{new_intake}/complaints", json=intake_body(), headers=auth
                ).json()
                assert _listed(escalation, auth, second["acceptance_no"], within=10)
                assert _leader({"escalation": escalation, "intake": new_intake}) == "escalation"


def test_a_deadline_passes_and_the_complaint_escalates_with_no_request(
    store_env: dict[str, str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'version = "e2e-fast"\n'
        "[[limit]]\n"
        'name = "investigation"\n'
        "amount = 0.001  # hours: 3.6 seconds\n"
        'unit = "hours"\n'
        'met_by = ["FindingsRecorded"]\n',
        encoding="utf-8",
    )
    env = {
        **store_env,
        "COMPLAINTS_POLICY_PATH": str(policy),
        "COMPLAINTS_DEADLINE_WATCH_SECONDS": "0.5",
    }
    agent = subprocess.run(
        [sys.executable, "-m", "shared.cli.token", "--roles", "agent"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    auth = {"Authorization": f"Bearer {agent}"}
    with service("intake", env) as intake, service("escalation", env):
        created = httpx.post(f"{intake}/complaints", json=intake_body(), headers=auth).json()
        assert created["deadlines"][0]["policy_version"] == "e2e-fast"
        deadline = time.monotonic() + 20
        complaint = created
        while time.monotonic() < deadline and complaint["status"] != "escalated":
            time.sleep(0.25)  # only reading: no request asks for the escalation
            complaint = httpx.get(f"{intake}/complaints/{created['id']}", headers=auth).json()
        assert complaint["status"] == "escalated"
        assert complaint["escalations"][0]["trigger"] == "deadline_missed"
        assert complaint["escalations"][0]["by"] == {"id": "deadline-watch", "role": "system"}
