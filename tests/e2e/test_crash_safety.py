"""Crash safety: load through real uvicorn processes on a real PostgreSQL, while services are
killed with SIGKILL and PostgreSQL itself crashes (`pg_ctl stop -m immediate`) and comes back.

Clients behave as frontends should: every logical request has its own Idempotency-Key and is
retried with it until it is acknowledged. Afterwards every acknowledged request is in the store
exactly once, nothing else is, the services came back by themselves when PostgreSQL did (a
killed process is restarted, as an orchestrator would), `/ready` said 503 while the store was
gone, and the read models equal a rebuild from the first event.

The cluster is a throwaway one from the local binaries, so crashing it harms nobody else.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from shared.cli.run import service_command
from tests.conftest import intake_body
from tests.e2e.processes import ROOT, cli, free_port, log_file, service_env, setup_store, token
from tests.postgres import Cluster, create_database, read_models

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

#: How many frontends keep sending, and what befalls the system meanwhile (in random order).
CLIENTS = 4
KILLS = 6
CRASHES = 3
#: A logical request not acknowledged within this long fails the test.
PATIENCE = 90.0


class Supervised:
    """One service process on a fixed port; started again after it is killed."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_file(f"crash-{name}")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                service_command(self.name, self.port, log_level="warning"),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def ready(self) -> int | None:
        try:
            return httpx.get(f"{self.url}/ready", timeout=5).status_code
        except httpx.HTTPError:
            return None

    def wait_until(self, status: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        self.seen: list[int | None] = []
        while time.monotonic() < deadline:
            answer = self.ready()
            self.seen.append(answer)
            if answer == status:
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _until_acknowledged(
    client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str], ok: int
) -> httpx.Response:
    """What a well-behaved frontend does: the same request, the same key, until it is answered.
    Connection errors, 5xx, 429 and "this key is still being processed" are retried; anything
    else is an answer the test did not expect."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            answer = client.post(url, json=body, headers=headers, timeout=10)
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        if answer.status_code == ok:
            return answer
        in_progress = answer.status_code == 409 and "idempotency" in answer.json().get("type", "")
        if answer.status_code >= 500 or answer.status_code == 429 or in_progress:
            time.sleep(0.2)
            continue
        raise AssertionError(f"{url}: {answer.status_code} {answer.text}")
    raise AssertionError(f"{url} was not acknowledged within {PATIENCE} s")


class Frontend(threading.Thread):
    """Accepts complaints and assigns each, every request retried with its own key."""

    def __init__(self, number: int, intake: str, investigation: str, tokens: dict[str, str]):
        super().__init__(daemon=True)
        self.number = number
        self.intake = intake
        self.investigation = investigation
        self.tokens = tokens
        self.stop = threading.Event()
        self.acknowledged: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client() as client:
                i = 0
                while not self.stop.is_set():
                    key = f"frontend-{self.number}-{i}"
                    customer = {
                        "id": f"cust-{self.number}-{i}",
                        "name": "李娜",
                        "phone": "13900000000",
                    }
                    created = _until_acknowledged(
                        client,
                        f"{self.intake}/complaints",
                        intake_body(
                            customer=customer, service_number=f"139{self.number:04d}{i:04d}"
                        ),
                        {"Authorization": self.tokens["agent"], "Idempotency-Key": key},
                        201,
                    )
                    cid = created.json()["id"]
                    _until_acknowledged(
                        client,
                        f"{self.investigation}/complaints/{cid}/assignment",
                        {
                            "department": "network-ops",
                            "investigator": "inv-1",
                            "complexity": "simple",
                        },
                        {"Authorization": self.tokens["supervisor"], "Idempotency-Key": f"{key}-a"},
                        200,
                    )
                    self.acknowledged.append(cid)
                    i += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.remove()


def _events_by_type(url: str) -> dict[str, dict[str, int]]:
    """For each complaint: how many events of each type it has."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT originator_id::text, split_part(topic, 'Complaint.', 2), count(*) "
            "FROM complaints_events WHERE topic LIKE '%:Complaint.%' GROUP BY 1, 2"
        ).fetchall()
    found: dict[str, dict[str, int]] = {}
    for complaint_id, kind, count in rows:
        found.setdefault(complaint_id, {})[kind] = count
    return found


def test_nothing_acknowledged_is_lost_through_kills_and_database_crashes(
    cluster: Cluster,
) -> None:
    env = service_env(
        create_database(cluster.url),
        COMPLAINTS_PROJECTOR_LEASE_SECONDS="2",
        COMPLAINTS_PROJECTOR_POLL_SECONDS="0.1",
        COMPLAINTS_IDEMPOTENCY_LEASE_SECONDS="3",  # a dead request's key is taken over soon
        COMPLAINTS_DISPATCHER_ENABLED="false",  # no gateway in this test
        COMPLAINTS_RATE_LIMIT_PER_SECOND="0",
    )
    url = env["COMPLAINTS_DATABASE_URL"]
    setup_store(env)
    services = {name: Supervised(name, env) for name in ("intake", "investigation")}
    for service in services.values():
        service.start()
    try:
        assert all(s.wait_until(200, 30) for s in services.values()), "services did not start"
        tokens = {
            role: f"Bearer {token(env, role, f'{role}-crash')}" for role in ("agent", "supervisor")
        }
        frontends = [
            Frontend(n, services["intake"].url, services["investigation"].url, tokens)
            for n in range(CLIENTS)
        ]
        for frontend in frontends:
            frontend.start()

        rng = random.Random(20261122)
        plan = ["kill"] * KILLS + ["crash"] * CRASHES
        rng.shuffle(plan)
        for blow in plan:
            time.sleep(rng.uniform(0.5, 2.0))  # at a random moment of the load
            if blow == "kill":
                victim = services[rng.choice(sorted(services))]
                victim.kill()
                victim.start()
                assert victim.wait_until(200, 30), f"{victim.name} did not come back"
                continue
            cluster.crash()
            # /ready tells the truth while the store is gone…
            for service in services.values():
                assert service.wait_until(503, 15), f"{service.name} said {service.seen}"
            time.sleep(rng.uniform(0.5, 1.5))
            cluster.start()
            # …and the services recover by themselves when it is back.
            for service in services.values():
                assert service.wait_until(200, 30), f"{service.name} said {service.seen}"

        for frontend in frontends:
            frontend.stop.set()
        for frontend in frontends:
            frontend.join(2 * PATIENCE + 30)  # at most two logical requests in flight
            assert not frontend.is_alive(), f"frontend {frontend.number} is still sending"
            assert frontend.error is None, repr(frontend.error)
        acknowledged = [cid for f in frontends for cid in f.acknowledged]
        assert len(acknowledged) >= CLIENTS * 3, "too little load got through to mean anything"
        print(f"{len(acknowledged)} complaints through {KILLS} kills and {CRASHES} crashes")

        # Every acknowledged request is in the store exactly once, and nothing else is.
        events = _events_by_type(url)
        assert set(events) == set(acknowledged)
        for cid, kinds in events.items():
            assert kinds == {"Accepted": 1, "Assigned": 1}, (cid, kinds)

        # The read models, caught up, equal a rebuild from the first event.
        head = max(httpx.get(f"{services['intake'].url}/ready", timeout=5).json()["position"], 1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = httpx.get(f"{services['intake'].url}/ready", timeout=5).json()
            if all(p["position"] >= head for p in ready["projections"].values()):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"projections did not catch up: {ready}")
        for service in services.values():
            service.stop()
        projected = read_models(url)
        assert len(projected["complaint_summaries"]) == len(acknowledged)
        cli(env, "rebuild")
        assert read_models(url) == projected
    finally:
        for service in services.values():
            service.stop()
