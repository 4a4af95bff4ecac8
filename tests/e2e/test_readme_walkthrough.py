"""The README's walkthrough pastes and runs, in order, against the four services as `make run`
starts them (an embedded SQLite store), with nothing but the ports changed: every bash block,
exactly as written, in one shell with `-e -o pipefail`.

The walkthrough's own `req` helper prints each answer's status, method and URL on stderr;
every one is checked against the answer the README's prose promises, in order. All are 2xx
but the three asked for on purpose to show the rules: a command out of order (409), an
investigator who does not own the complaint (403) and a refusal whose reason does not hold
(422). The regulator's verifier ends it: valid.
"""

from __future__ import annotations

import re
import subprocess
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.processes import ROOT, gateway, service, service_env, setup_store

pytestmark = pytest.mark.e2e

SERVICES = {"intake": 8001, "investigation": 8002, "escalation": 8003, "callback": 8004}

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

#: Every answer of the walkthrough, in order: status, method, service, path (ids as {id}).
EXPECTED = [
    # Accept a complaint, read it back
    ("201", "POST", "intake", "/complaints"),
    ("200", "GET", "investigation", "/complaints/{id}"),
    ("200", "GET", "investigation", "/complaints/{id}/history"),
    # From the assignment to the archive
    ("201", "POST", "intake", "/complaints"),
    ("409", "POST", "investigation", "/complaints/{id}/findings"),  # before the assignment
    ("200", "POST", "investigation", "/complaints/{id}/assignment"),
    ("403", "POST", "investigation", "/complaints/{id}/evidence"),  # inv-099 does not own it
    ("200", "POST", "investigation", "/complaints/{id}/evidence"),
    ("200", "POST", "investigation", "/complaints/{id}/findings"),
    ("200", "POST", "investigation", "/complaints/{id}/resolution"),
    ("200", "POST", "investigation", "/complaints/{id}/reply"),
    ("200", "POST", "callback", "/complaints/{id}/callback"),
    ("200", "POST", "callback", "/complaints/{id}/archive"),
    # Refuse a complaint
    ("201", "POST", "intake", "/complaints"),
    ("422", "POST", "intake", "/complaints/{id}/refusal"),  # time_barred, not flagged
    ("200", "POST", "intake", "/complaints/{id}/refusal"),
    ("200", "GET", "investigation", "/complaints/{id}"),  # ?as_of= before the refusal
    # A complex complaint, extended
    ("201", "POST", "intake", "/complaints"),
    ("200", "POST", "investigation", "/complaints/{id}/assignment"),
    ("200", "POST", "investigation", "/complaints/{id}/extension"),
    # How the customer is told
    ("201", "POST", "intake", "/complaints"),
    ("200", "GET", "intake", "/complaints"),
    ("200", "POST", "investigation", "/complaints/{id}/notifications/ack-1/confirmation"),
    # Webhooks
    ("201", "POST", "intake", "/subscriptions"),
    ("201", "POST", "intake", "/complaints"),
    ("200", "GET", "intake", "/subscriptions/{id}/deliveries"),
    ("200", "GET", "gateway", "/webhooks"),  # what the receiver got
    # Escalation, the level's handler, and its review
    ("201", "POST", "intake", "/complaints"),
    ("200", "POST", "escalation", "/complaints/{id}/escalation"),
    ("200", "POST", "escalation", "/complaints/{id}/handler"),
    ("200", "POST", "escalation", "/complaints/{id}/review"),
    # A regulator appeal
    ("201", "POST", "escalation", "/appeals"),
    ("200", "POST", "escalation", "/complaints/{id}/review"),
    ("200", "POST", "investigation", "/complaints/{id}/findings"),
    ("200", "POST", "investigation", "/complaints/{id}/reply"),
    # Major incidents
    ("200", "GET", "escalation", "/incidents"),
    # Lists
    ("200", "GET", "escalation", "/complaints"),
    ("200", "GET", "escalation", "/complaints"),
    # Improvement reports
    ("200", "GET", "callback", "/reports/improvement"),
    ("200", "GET", "callback", "/reports/improvement"),
    ("200", "GET", "callback", "/reports/improvement"),  # as CSV
    ("200", "GET", "callback", "/reports/improvement"),  # under the draft policy
    # A regulator's audit session
    ("200", "GET", "callback", "/audit/public-key"),
    ("200", "GET", "callback", "/audit/checkpoints"),  # the witness's copy
    ("201", "POST", "callback", "/audit/checkpoints"),
    ("200", "GET", "callback", "/audit/export"),
    ("200", "GET", "callback", "/audit/checkpoints"),
]


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    part = readme[readme.index("## A walkthrough with curl") : readme.index("## Conventions")]
    return "\n".join(re.findall(r"```bash\n(.*?)```", part, re.S))


def answers(stderr: str, services: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """The walkthrough's `HTTP <status> <method> <url>` lines: status, method, the service the
    URL names, and its path with each complaint id as {id}."""
    by_origin = {urlsplit(url).netloc: name for name, url in services.items()}
    found = []
    for line in stderr.splitlines():
        if line.startswith("HTTP "):
            _, code, method, url = line.split(" ", 3)
            parts = urlsplit(url)
            found.append((code, method, by_origin[parts.netloc], _ID.sub("{id}", parts.path)))
    return found


def test_the_readme_walkthrough_runs_in_order(tmp_path: Path) -> None:
    env = service_env(
        f"sqlite:///{tmp_path / 'complaints.sqlite3'}",
        COMPLAINTS_ENVIRONMENT="development",
        COMPLAINTS_PROJECTOR_POLL_SECONDS="0.05",
        COMPLAINTS_NOTIFICATION_GATEWAY_URL="http://127.0.0.1:9/messages",  # none: retried
    )
    setup_store(env)
    # At the top of a checkout, as the README says, without writing into this one.
    work = tmp_path / "checkout"
    work.mkdir()
    for name in ("Makefile", "pyproject.toml", "requirements", "shared", ".venv"):
        (work / name).symlink_to(ROOT / name)
    script = walkthrough()
    assert "curl -s" not in script.replace("req() { curl -s", "")  # each status is shown
    urls = {}
    with ExitStack() as stack:
        # The webhook receiver (the gateway's /webhooks); messages to customers go nowhere.
        urls["gateway"] = stack.enter_context(gateway(env))
        script = script.replace("http://127.0.0.1:8025", urls["gateway"])
        for name, port in SERVICES.items():
            urls[name] = stack.enter_context(service(name, env))
            script = script.replace(f"http://127.0.0.1:{port}", urls[name])
        run = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=work,
            env=env,  # the machine's own python3 and make, as a reader's terminal has
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert answers(run.stderr, urls) == EXPECTED, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    # The webhook reached the receiver, signed with the subscription's secret, masked.
    assert re.search(
        r"^msg_\w+ Complaint\.Accepted \{'id': 'cust-000140', 'name': \{'sha256': ",
        run.stdout,
        re.M,
    ), run.stdout
    assert run.stdout.strip().splitlines()[-1].startswith("valid: ")
    assert (work / "export.ndjson").stat().st_size > 0
