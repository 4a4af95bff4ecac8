"""Every role against every endpoint, as docs/api.md's "Who may do what" says, and what each role
sees of a customer's contact details. A role that may not act gets 403; one that may is never
refused for its role (the command may still be illegal in the complaint's status)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.callback.main import create_app as callback_app
from services.escalation.main import create_app as escalation_app
from services.intake.main import create_app as intake_app
from services.investigation.main import create_app as investigation_app
from shared.domain.clock import FixedClock
from shared.http.routes import ROUTES
from shared.settings import Settings
from tests.conftest import TokenFactory, intake_body
from tests.integration.conftest import Api, serving
from tests.integration.test_investigation import BODIES

ROLES = ("agent", "investigator", "supervisor", "callback", "analyst", "regulator", "admin")
EVERYONE = frozenset(ROLES)

#: (service, method, path, body, roles allowed besides admin)
MATRIX: list[tuple[str, str, str, dict[str, Any] | None, frozenset[str]]] = [
    ("intake", "POST", "/complaints", intake_body(), frozenset({"agent", "supervisor"})),
    (
        "intake",
        "POST",
        "/complaints/{id}/refusal",
        {"reason": "out_of_scope", "explanation": "x", "redirect": "y"},
        frozenset({"agent", "supervisor"}),
    ),
    (
        "investigation",
        "POST",
        "/complaints/{id}/assignment",
        BODIES["assignment"],
        frozenset({"supervisor"}),
    ),
    *[
        (
            "investigation",
            "POST",
            f"/complaints/{{id}}/{name}",
            BODIES[name],
            frozenset({"investigator", "supervisor"}),
        )
        for name in ("evidence", "extension", "findings", "resolution", "reply")
    ],
    (
        "investigation",
        "POST",
        "/complaints/{id}/pause",
        {"reason": "waiting"},
        frozenset({"investigator", "supervisor"}),
    ),
    (
        "investigation",
        "POST",
        "/complaints/{id}/resume",
        {},
        frozenset({"investigator", "supervisor"}),
    ),
    (
        "investigation",
        "POST",
        "/complaints/{id}/notifications/ack-1/confirmation",
        {"note": "已电话告知"},
        frozenset({"agent", "investigator", "callback", "supervisor"}),
    ),
    (
        "escalation",
        "POST",
        "/complaints/{id}/escalation",
        {"trigger": "customer_dissatisfied", "reason": "r", "to_level": "provincial"},
        frozenset({"agent", "investigator", "callback", "supervisor"}),
    ),
    (
        "escalation",
        "POST",
        "/complaints/{id}/handler",
        {"handler": "prov-sup-1"},
        frozenset({"supervisor"}),
    ),
    (
        "escalation",
        "POST",
        "/complaints/{id}/review",
        {"outcome": "upheld", "notes": "n"},
        frozenset({"supervisor"}),
    ),
    (
        "escalation",
        "POST",
        "/appeals",
        {
            "regulator_ref": "MIIT-1",
            "due_at": "2026-12-20T00:00:00+08:00",
            "acceptance_no": "{acceptance_no}",
        },
        frozenset({"agent", "supervisor"}),
    ),
    (
        "callback",
        "POST",
        "/complaints/{id}/callback",
        {"satisfaction": "satisfied", "resolved": True, "comments": ""},
        frozenset({"callback", "supervisor"}),
    ),
    (
        "callback",
        "POST",
        "/complaints/{id}/archive",
        {"summary": "s"},
        frozenset({"callback", "supervisor"}),
    ),
    (
        "callback",
        "GET",
        "/reports/improvement",
        None,
        frozenset({"analyst", "supervisor", "regulator"}),
    ),
    *[
        (service, "GET", path, None, EVERYONE)
        for service in ("intake", "investigation", "escalation", "callback")
        for path in ("/complaints/{id}", "/complaints/{id}/history", "/complaints")
    ],
    ("escalation", "GET", "/incidents", None, EVERYONE),
    ("escalation", "GET", "/incidents/{incident_id}", None, EVERYONE),
    *[
        row
        for service in ("intake", "investigation", "escalation", "callback")
        for row in (
            (service, "GET", "/audit/export", None, frozenset({"regulator", "analyst"})),
            (service, "GET", "/audit/checkpoints", None, frozenset({"regulator", "analyst"})),
            (service, "GET", "/audit/public-key", None, frozenset({"regulator", "analyst"})),
            # the regulator never writes
            (service, "POST", "/audit/checkpoints", None, frozenset({"analyst"})),
        )
    ],
    # admin only; the matrix complaint's own customer (one who never complained is 404)
    ("intake", "POST", "/customers/{customer_id}/erasure", None, frozenset()),
    # webhooks: admin only
    (
        "intake",
        "POST",
        "/subscriptions",
        {"url": "https://hooks.example.com/in", "event_types": ["Complaint.Accepted"]},
        frozenset(),
    ),
    ("intake", "GET", "/subscriptions", None, frozenset()),
    ("intake", "GET", "/subscriptions/{subscription_id}", None, frozenset()),
    ("intake", "DELETE", "/subscriptions/{subscription_id}", None, frozenset()),
    ("intake", "GET", "/subscriptions/{subscription_id}/deliveries", None, frozenset()),
]

#: Open to anyone, by design: what probes and scrapers call.
PUBLIC = {("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics")}


@pytest.fixture
async def apps(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> AsyncIterator[dict[str, Api]]:
    quiet = settings.model_copy(
        update={
            "deadline_watch_enabled": False,
            "dispatcher_enabled": False,
            "webhooks_enabled": False,
        }
    )
    async with (
        serving(intake_app(quiet, clock=clock), token) as intake,
        serving(investigation_app(quiet, clock=clock), token) as investigation,
        serving(escalation_app(quiet, clock=clock), token) as escalation,
        serving(callback_app(quiet, clock=clock), token) as callback,
    ):
        yield {
            "intake": intake,
            "investigation": investigation,
            "escalation": escalation,
            "callback": callback,
        }


#: An incident nobody declared: reading it is 404 for every role, never 403.
UNKNOWN_INCIDENT = "00000000-0000-5000-8000-000000000014"


def _fill(value: Any, complaint: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return (
            value.replace("{id}", complaint["id"])
            .replace("{acceptance_no}", complaint["acceptance_no"])
            .replace("{incident_id}", UNKNOWN_INCIDENT)
            .replace("{customer_id}", complaint["customer"]["id"])
        )
    if isinstance(value, dict):
        return {k: _fill(v, complaint) for k, v in value.items()}
    return value


async def _call(api: Api, method: str, path: str, body: Any, role: str) -> httpx.Response:
    headers = api.headers(role, f"{role}-matrix")
    if method == "GET":
        return await api.client.get(path, headers=headers)
    if method == "DELETE":
        return await api.client.delete(path, headers=headers)
    return await api.client.post(path, json=body, headers=headers)


async def test_every_role_against_every_endpoint(apps: dict[str, Api]) -> None:
    complaint = (await apps["intake"].accept(intake_body())).json()
    wrong = []
    for service, method, path, body, allowed in MATRIX:
        for role in ROLES:
            answer = await _call(
                apps[service], method, _fill(path, complaint), _fill(body, complaint), role
            )
            may = role in allowed or role == "admin"
            if (answer.status_code == 403) == may or answer.status_code == 401:
                wrong.append((service, method, path, role, answer.status_code))
            if answer.status_code == 403:
                assert answer.headers["content-type"] == "application/problem+json"
            if path.endswith("/erasure") and may:
                assert answer.status_code == 200, answer.text  # a customer who exists
    assert wrong == []


def test_the_matrix_covers_every_endpoint(apps: dict[str, Api]) -> None:
    """A new endpoint cannot slip in without saying who may call it."""
    for service, api in apps.items():
        paths = api.client._transport.app.openapi()["paths"]  # type: ignore[attr-defined]
        served = {(m.upper(), p) for p, methods in paths.items() for m in methods} - PUBLIC
        covered = {(method, path) for s, method, path, _, _ in MATRIX if s == service}
        covered = {
            (m, p.replace("{id}", "{complaint_id}").replace("ack-1", "{notification_id}"))
            for m, p in covered
        }
        assert served == covered, service


def test_every_command_a_409_names_is_served_where_it_says(apps: dict[str, Api]) -> None:
    for service, path in ROUTES.values():
        paths = apps[service.value].client._transport.app.openapi()["paths"]  # type: ignore[attr-defined]
        assert "post" in paths[path.replace("{id}", "{complaint_id}")], path


UNMASKED = {"agent", "callback", "admin"}


async def test_contact_details_are_masked_for_every_role_that_needs_none(
    apps: dict[str, Api],
) -> None:
    complaint = (await apps["intake"].accept(intake_body())).json()
    cid = complaint["id"]
    for role in ROLES:
        plain = role in UNMASKED
        phone = "13812341234" if plain else "138****1234"
        email = "zhang.wei@example.cn" if plain else "z***@example.cn"
        for service in ("intake", "callback"):
            api = apps[service]
            read = (await api.get(f"/complaints/{cid}", role=role)).json()
            assert (read["customer"]["phone"], read["customer"]["email"]) == (phone, email), role
            assert read["service_number"] == phone, role
            past = (
                await api.get(f"/complaints/{cid}", role=role, as_of=complaint["accepted_at"])
            ).json()
            assert past["customer"]["phone"] == phone, role
            events = (await api.get(f"/complaints/{cid}/history", role=role)).json()["events"]
            customer = events[0]["data"]["intake"]["customer"]
            assert (customer["phone"], customer["email"]) == (phone, email), role
