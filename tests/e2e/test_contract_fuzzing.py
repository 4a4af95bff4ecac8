"""Contract fuzzing: Schemathesis against the OpenAPI of all four services, running as real
processes on PostgreSQL, with a valid token.

Every phase runs (the schema's examples, coverage of its edge values, random fuzzing with
positive and negative data, and the stateful phase that chains a created complaint into the
later commands), with every check but one: no server error, responses matching their documented
schema, status codes, content types and headers, invalid input refused with a 4xx, auth not
ignored, 405 with a right `Allow` for methods not in the schema.

Left out: `positive_data_acceptance`, which expects every schema-valid request to succeed.
Ours are refused on purpose when the domain says so, for rules a JSON schema cannot state: a
time that lies in the future or before 1990, a command illegal in the complaint's status (409),
an unknown complaint (404).
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.e2e.processes import ROOT, service, token

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

HERE = Path(__file__).parent
SERVICES = ("intake", "investigation", "escalation", "callback")
#: Examples per operation and phase: enough to find what it finds here in about a minute.
EXAMPLES = "10"


def test_every_service_keeps_its_contract_under_fuzzing(store_env: dict[str, str]) -> None:
    env = {
        **store_env,
        "COMPLAINTS_RATE_LIMIT_PER_SECOND": "0",  # a fuzzer is not an abusive client here
        "COMPLAINTS_DISPATCHER_ENABLED": "false",
        "COMPLAINTS_DEADLINE_WATCH_ENABLED": "false",
        # Subscriptions it makes up are not to be sent to (their made-up hosts resolved).
        "COMPLAINTS_WEBHOOKS_ENABLED": "false",
    }
    admin = token(env, "admin", "fuzzer")
    fuzzer_env = {**env, "SCHEMATHESIS_HOOKS": "tests.e2e.fuzz_hooks", "FUZZ_TOKEN": admin}
    failures = []
    with ExitStack() as stack:
        urls = {name: stack.enter_context(service(name, env)) for name in SERVICES}
        for name, url in urls.items():
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "schemathesis.cli",
                    "--config-file",
                    str(HERE / "schemathesis.toml"),
                    "run",
                    f"{url}/openapi.json",
                    "--checks",
                    "all",
                    "--max-examples",
                    EXAMPLES,
                    "--seed",
                    "20261122",
                    "--workers",
                    "1",
                    "--request-timeout",
                    "15",
                    "--output-truncate",
                    "true",
                ],
                cwd=ROOT,
                env=fuzzer_env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if run.returncode != 0:
                failures.append(f"== {name}\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}")
    assert not failures, "\n".join(failures)
