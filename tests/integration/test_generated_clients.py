"""Clients generated from the services' OpenAPI (`openapi-python-client`, as an outside team
would) drive a complaint's whole life, errors included, with typed models only: no raw JSON
is handled here. What the generator cannot type makes this test fail (a dict where a model
is due, an error it cannot parse)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import httpx
import pytest

from services.callback.main import create_app as callback_app
from services.escalation.main import create_app as escalation_app
from services.intake.main import create_app as intake_app
from services.investigation.main import create_app as investigation_app
from shared.domain.clock import FixedClock
from shared.settings import Settings
from tests.conftest import TokenFactory, make_settings

FACTORIES = {
    "intake": intake_app,
    "investigation": investigation_app,
    "escalation": escalation_app,
    "callback": callback_app,
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """Each service's client package, generated from its published document."""
    root = tmp_path_factory.mktemp("clients")
    spec_settings = make_settings("sqlite:///unused.sqlite3")
    tools = Path(sys.executable).parent  # the generator formats with ruff, found on PATH
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name, factory in FACTORIES.items():
        spec = root / f"{name}.json"
        spec.write_text(json.dumps(factory(spec_settings).openapi()))
        run = subprocess.run(
            [
                str(tools / "openapi-python-client"),
                "generate",
                "--path",
                str(spec),
                "--meta",
                "none",
                "--output-path",
                str(root / f"{name}_client"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        # Everything typed: the generator warns of each response it could not model.
        warnings = [
            line
            for line in run.stdout.splitlines()
            if "Cannot parse response" in line and "application/x-ndjson" not in line
        ]
        assert warnings == [], run.stdout
    sys.path.insert(0, str(root))
    try:
        yield {name: importlib.import_module(f"{name}_client") for name in FACTORIES}
    finally:
        sys.path.remove(str(root))


class Clients:
    """The generated clients on the running apps, one per service and role."""

    def __init__(
        self, apps: dict[str, Any], packages: dict[str, ModuleType], token: TokenFactory
    ) -> None:
        self.apps, self.packages, self.token = apps, packages, token

    def __call__(self, service: str, role: str | None, sub: str | None = None) -> Any:
        package = self.packages[service]
        # The app in-process: the client's own httpx client, on an ASGI transport.
        transport = {"transport": httpx.ASGITransport(app=self.apps[service])}
        if role is None:
            return package.Client(base_url="http://test", httpx_args=transport)
        return package.AuthenticatedClient(
            base_url="http://test", token=self.token(role, sub), httpx_args=transport
        )

    def api(self, service: str, module: str) -> Any:
        """An operation's module, e.g. api("intake", "intake.accept_complaint")."""
        return importlib.import_module(f"{service}_client.api.{module}")

    def model(self, service: str, name: str) -> Any:
        return getattr(importlib.import_module(f"{service}_client.models"), name)


@pytest.fixture
async def clients(
    settings: Settings,
    clock: FixedClock,
    token: TokenFactory,
    generated: dict[str, ModuleType],
) -> AsyncIterator[Clients]:
    quiet = settings.model_copy(
        update={"deadline_watch_enabled": False, "dispatcher_enabled": False}
    )
    apps = {name: factory(quiet, clock=clock) for name, factory in FACTORIES.items()}
    async with AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield Clients(apps, generated, token)


async def test_a_generated_client_drives_a_whole_lifecycle_errors_included(
    clients: Clients,
) -> None:
    agent = clients("intake", "agent")
    accept = clients.api("intake", "intake.accept_complaint")
    m = lambda name: clients.model("intake", name)  # noqa: E731
    body = m("AcceptRequest")(
        channel=m("Channel").HOTLINE,
        customer=m("Customer")(id="cust-gen-1", name="张伟", phone="13812341234"),
        service_number="13812341234",
        business_type=m("BusinessType").MOBILE,
        category=m("Category").NETWORK_COVERAGE,
        occurred_at=datetime.fromisoformat("2026-11-20T08:30:00+08:00"),
        description="家里没有4G信号,已持续三天。",
        demand="尽快修复",
        reply_channel=m("ReplyChannel").SMS,
    )
    created = await accept.asyncio_detailed(client=agent, body=body, idempotency_key="gen-key-1")
    assert created.status_code == 201
    complaint = created.parsed
    assert isinstance(complaint, m("ComplaintView"))
    assert complaint.status == m("Status").ACCEPTED
    assert created.headers["Location"] == f"/complaints/{complaint.id}"
    assert complaint.customer.phone == "13812341234"  # an agent sees it unmasked
    assert all(d.state == "running" for d in complaint.deadlines)

    again = await accept.asyncio_detailed(client=agent, body=body, idempotency_key="gen-key-1")
    assert again.headers["Idempotent-Replayed"] == "true" and again.parsed.id == complaint.id

    # A bad request: the problem is parsed, each bad field named.
    body.customer.phone = "call me"
    refused = await accept.asyncio_detailed(client=agent, body=body)
    assert refused.status_code == 422
    problem = refused.parsed
    assert isinstance(problem, m("Problem"))
    assert [e.field for e in problem.errors] == ["customer.phone"]
    # A domain rule the schema cannot state: a problem too, with its reason.
    body.customer.phone = "13812341234"
    body.occurred_at = body.occurred_at.replace(year=2099)
    future = await accept.asyncio_detailed(client=agent, body=body)
    assert future.status_code == 422 and "future" in future.parsed.detail

    # Without a token, and with the wrong role.
    nobody = await accept.asyncio_detailed(client=clients("intake", None), body=body)
    assert nobody.status_code == 401 and isinstance(nobody.parsed, m("Problem"))

    cid = complaint.id
    inv = "investigation"
    i = lambda name: clients.model(inv, name)  # noqa: E731
    supervisor = clients(inv, "supervisor")
    investigator = clients(inv, "investigator", "inv-gen-1")
    early = await clients.api(inv, "investigation.reply").asyncio_detailed(
        cid,
        client=supervisor,
        body=i("ReplyRequest")(
            channel=i("ReplyChannel").SMS, conclusion="x", basis="y", plan="z", execution="w"
        ),
    )
    assert early.status_code == 409
    assert early.parsed.current_status == "accepted"
    assert any("/assignment" in route for route in early.parsed.allowed)

    assign = clients.api(inv, "investigation.assign")
    assignment = i("AssignmentRequest")(
        department="network-ops", investigator="inv-gen-1", complexity=i("Complexity").SIMPLE
    )
    wrong_role = await assign.asyncio_detailed(cid, client=investigator, body=assignment)
    assert wrong_role.status_code == 403 and isinstance(wrong_role.parsed, i("Problem"))
    stale = await assign.asyncio_detailed(cid, client=supervisor, body=assignment, if_match='"7"')
    assert stale.status_code == 412 and isinstance(stale.parsed, i("Problem"))
    assigned = await assign.asyncio_detailed(
        cid, client=supervisor, body=assignment, if_match=created.headers["ETag"]
    )
    assert assigned.status_code == 200
    assert assigned.parsed.assignment.investigator == "inv-gen-1"

    await _ok(
        clients.api(inv, "investigation.add_evidence"),
        cid,
        investigator,
        i("EvidenceRequest")(kind=i("EvidenceKind").CALL_RECORD, ref="CDR-1", summary="告警 37 次"),
    )
    await _ok(
        clients.api(inv, "investigation.record_findings"),
        cid,
        investigator,
        i("FindingsRequest")(
            conclusion="基站故障", basis="规范第 7 条", root_cause="transmission_fault", upheld=True
        ),
    )
    when = complaint.accepted_at.replace(year=complaint.accepted_at.year + 1)
    await _ok(
        clients.api(inv, "investigation.propose_resolution"),
        cid,
        investigator,
        i("ResolutionRequest")(
            measures=["更换传输板"],
            remedies=[i("Remedy")(type_=i("RemedyType").REFUND, amount="128.50")],
            owner="eng-1",
            due_at=when,
        ),
    )
    replied = await _ok(
        clients.api(inv, "investigation.reply"),
        cid,
        investigator,
        i("ReplyRequest")(
            channel=i("ReplyChannel").SMS,
            conclusion="已修复",
            basis="规范",
            plan="减免",
            execution="已执行",
        ),
    )
    assert replied.resolution.remedies[0].amount == "128.50"
    assert replied.findings.upheld is True
    assert replied.evidence[0].by.id == "inv-gen-1"

    cb = "callback"
    c = lambda name: clients.model(cb, name)  # noqa: E731
    agent_cb = clients(cb, "callback")
    called = await _ok(
        clients.api(cb, "callback.callback"),
        cid,
        agent_cb,
        c("CallbackRequest")(
            satisfaction=c("Satisfaction").SATISFIED, resolved=True, comments="满意"
        ),
    )
    assert called.callbacks[0].satisfaction == "satisfied"
    archived = await _ok(
        clients.api(cb, "callback.archive"), cid, agent_cb, c("ArchiveRequest")(summary="结案")
    )
    assert archived.status == c("Status").ARCHIVED

    # Reads: typed, masked for a regulator, and the hash-linked history.
    regulator = clients("escalation", "regulator")
    read = clients.api("escalation", "reads.read_complaint")
    shown = await read.asyncio(cid, client=regulator)
    assert shown.customer.phone == "138****1234" and shown.version == archived.version
    history = await clients.api("escalation", "reads.read_history").asyncio(cid, client=regulator)
    assert [e.type_ for e in history.events][:2] == ["Accepted", "Assigned"]
    assert all(e.prev_hash == p.hash_ for p, e in pairwise(history.events))
    missing = await read.asyncio_detailed(
        UUID("00000000-0000-4000-8000-000000000000"), client=regulator
    )
    assert missing.status_code == 404 and isinstance(
        missing.parsed, clients.model("escalation", "Problem")
    )


async def _ok(operation: Any, complaint_id: Any, client: Any, body: Any) -> Any:
    answer = await operation.asyncio_detailed(complaint_id, client=client, body=body)
    assert answer.status_code == 200, answer.content
    return answer.parsed
