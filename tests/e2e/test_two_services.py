"""Real uvicorn processes on one PostgreSQL store: write through intake, read through another."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import intake_body
from tests.e2e.processes import LOGS, PROCESSES, service, token

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def test_accepted_through_intake_is_read_through_investigation(
    store_env: dict[str, str],
) -> None:
    agent = token(store_env, "agent", "agent-e2e")
    auth = {"Authorization": f"Bearer {agent}"}
    # Told at the hotline and answered by phone: no message for the investigation process's
    # dispatcher to send, so the store's last position is the acceptance's own.
    body = intake_body(reply_channel="phone")
    with service("intake", store_env) as intake, service("investigation", store_env) as other:
        created = httpx.post(
            f"{intake}/complaints", json=body, headers={**auth, "Idempotency-Key": "e2e"}
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
            f"{intake}/complaints", json=body, headers={**auth, "Idempotency-Key": "e2e"}
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
    agent = token(env, "agent", "agent-local")
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
        'met_by = ["FindingsRecorded"]\n'
        # A policy in force starts a limit in every situation; these never come into play.
        + "".join(
            f'[[limit]]\nname = "{opening}_next"\nopens_on = "{opening}"\namount = 30\n'
            'unit = "calendar_days"\nmet_by = ["Archived"]\n'
            for opening in ("escalated", "reopened", "replied", "callback_done")
        ),
        encoding="utf-8",
    )
    env = {
        **store_env,
        "COMPLAINTS_POLICY_PATH": str(policy),
        "COMPLAINTS_DEADLINE_WATCH_SECONDS": "0.5",
    }
    agent = token(env, "agent", "agent-local")
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


REQUEST_ID = "6f1c2a9e-3b7d-4e58-9a0c-d41e7b2f8c35"
#: What intake_body() says about the customer: none of it may reach a log.
PERSONAL = ("张伟", "13812341234", "zhang.wei@example.cn", "家里没有4G信号")


def test_logs_are_json_lines_with_correlation_ids_and_no_personal_data(
    store_env: dict[str, str],
) -> None:
    agent = token(store_env, "agent", "agent-logs")
    auth = {"Authorization": f"Bearer {agent}"}
    with service("intake", store_env, log_level="info") as intake:
        created = httpx.post(
            f"{intake}/complaints",
            json=intake_body(),
            headers={**auth, "X-Request-ID": REQUEST_ID},
        )
        assert created.status_code == 201
        assert created.headers["X-Request-ID"] == REQUEST_ID
        cid = created.json()["id"]
        history = httpx.get(f"{intake}/complaints/{cid}/history", headers=auth).json()
        assert history["events"][0]["correlation_id"] == REQUEST_ID
        # A header that is not a UUID is replaced, not logged.
        odd = httpx.get(f"{intake}/complaints/{cid}", headers={**auth, "X-Request-ID": "a b\\c"})
        generated = odd.headers["X-Request-ID"]
        assert generated != "a b\\c" and len(generated) == 32
        # Bad input full of personal data: refused, and still nothing of it in the logs.
        bad = httpx.post(
            f"{intake}/complaints",
            json={**intake_body(), "occurred_at": "yesterday"},
            headers=auth,
        )
        assert bad.status_code == 422
        unknown = httpx.post(  # a query parameter the route does not take, holding a phone
            f"{intake}/complaints",
            json=intake_body(),
            headers=auth,
            params={"phone": "13812341234"},
        )
        assert unknown.status_code == 400
        log_path = LOGS[intake]
    text = log_path.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert records, "the service wrote no logs"
    access = [r for r in records if r["logger"] == "complaints.access"]
    assert {r["correlation_id"] for r in access} >= {REQUEST_ID, generated}
    assert all({"time", "level", "message", "route", "status"} <= r.keys() for r in access)
    assert {r["route"] for r in access} >= {"/complaints", "/complaints/{complaint_id}"}
    for value in PERSONAL:
        assert value not in text and json.dumps(value)[1:-1] not in text, value
