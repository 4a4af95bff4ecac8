"""The README's walkthrough pastes and runs, in order, against the four services as `make run`
starts them (an embedded SQLite store), with nothing but the ports changed.

Every request it makes is answered 2xx, except the three it makes on purpose to show the
rules: a command out of order (409), an investigator who does not own the complaint (403) and
a refusal whose reason does not hold (422). The regulator's verifier ends it: valid.
"""

from __future__ import annotations

import re
import subprocess
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.e2e.processes import ROOT, gateway, service, service_env, setup_store

pytestmark = pytest.mark.e2e

SERVICES = {"intake": 8001, "investigation": 8002, "escalation": 8003, "callback": 8004}

#: curl, as the walkthrough calls it, also writing each answer's status to stderr.
CURL = (
    "curl() { command curl -w '%{stderr}HTTP %{http_code} %{method} %{url_effective}\\n' \"$@\"; }"
)

#: The answers the walkthrough asks for on purpose, to show the rules (method, path end).
SHOWN = [
    ("409", "POST", "/findings"),  # before the assignment
    ("403", "POST", "/evidence"),  # inv-099 does not own it
    ("422", "POST", "/refusal"),  # time_barred, not flagged
]


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    part = readme[readme.index("## A walkthrough with curl") : readme.index("## Conventions")]
    return "\n".join(re.findall(r"```bash\n(.*?)```", part, re.S))


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
    for name in ("Makefile", "pyproject.toml", "shared", ".venv"):
        (work / name).symlink_to(ROOT / name)
    script = walkthrough()
    with ExitStack() as stack:
        # The webhook receiver (the gateway's /webhooks); messages to customers go nowhere.
        script = script.replace("http://127.0.0.1:8025", stack.enter_context(gateway(env)))
        for name, port in SERVICES.items():
            url = stack.enter_context(service(name, env))
            script = script.replace(f"http://127.0.0.1:{port}", url)
        run = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", f"{CURL}\n{script}"],
            cwd=work,
            env=env,  # the machine's own python3 and make, as a reader's terminal has
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    answers = [
        line.split(" ", 3)[1:] for line in run.stderr.splitlines() if line.startswith("HTTP ")
    ]
    assert len(answers) > 30
    unexpected = [a for a in answers if not a[0].startswith("2")]
    assert [(code, method, url[url.rindex("/") :]) for code, method, url in unexpected] == SHOWN, (
        unexpected
    )
    assert "Traceback" not in run.stderr
    # The webhook reached the receiver, signed with the subscription's secret, masked.
    assert re.search(
        r"^msg_\w+ Complaint\.Accepted \{'id': 'cust-000140', 'name': \{'sha256': ",
        run.stdout,
        re.M,
    ), run.stdout
    assert run.stdout.strip().splitlines()[-1].startswith("valid: ")
    assert (work / "export.ndjson").stat().st_size > 0
