"""Tokens and roles, and what ops engineers poll."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import psycopg
import pytest

from shared.settings import Settings
from tests.conftest import TEST_SECRET, intake_body
from tests.integration.conftest import Api


def _token(claims: dict[str, object], secret: str = TEST_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def _future() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer not-a-jwt",
        "Basic YWdlbnQ6cGFzcw==",
        "Bearer " + _token({"sub": "a", "roles": ["agent"], "exp": datetime(2020, 1, 1)}),
        "Bearer " + _token({"sub": "a", "roles": ["agent"], "exp": _future()}, "wrong-secret-" * 3),
        "Bearer " + _token({"sub": "a", "roles": ["agent"]}),  # no exp
        "Bearer " + _token({"roles": ["agent"], "exp": _future()}),  # no sub
        "Bearer " + _token({"sub": "a", "roles": ["wizard"], "exp": _future()}),
        "Bearer " + _token({"sub": "a", "roles": "agent", "exp": _future()}),
        "Bearer " + _token({"sub": "a", "roles": [["agent"]], "exp": _future()}),
        "Bearer " + _token({"sub": "a" * 201, "roles": ["agent"], "exp": _future()}),
        "Bearer " + _token({"sub": 42, "roles": ["agent"], "exp": _future()}),
        "Bearer " + jwt.encode({"sub": "a", "roles": ["admin"], "exp": _future()}, None, "none"),
    ],
)
async def test_invalid_tokens_are_401(api: Api, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await api.client.post("/complaints", json=intake_body(), headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("role", "status"),
    [
        ("agent", 201),
        ("supervisor", 201),
        ("admin", 201),
        ("investigator", 403),
        ("callback", 403),
        ("analyst", 403),
        ("regulator", 403),
    ],
)
async def test_who_may_accept(api: Api, role: str, status: int) -> None:
    response = await api.accept(intake_body(), role=role)
    assert response.status_code == status, response.text


async def test_regulator_reads_but_never_writes(api: Api) -> None:
    created = (await api.accept(intake_body())).json()
    assert (await api.get(f"/complaints/{created['id']}", role="regulator")).status_code == 200
    refusal = await api.client.post(
        f"/complaints/{created['id']}/refusal",
        json={"reason": "out_of_scope", "explanation": "x", "redirect": "y"},
        headers=api.headers("regulator"),
    )
    assert refusal.status_code == 403


async def test_the_acting_role_is_recorded(api: Api) -> None:
    token = api.token("agent", "multi-1", roles=["analyst", "supervisor"])
    response = await api.client.post(
        "/complaints", json=intake_body(), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201
    history = (await api.get(f"/complaints/{response.json()['id']}/history")).json()
    assert history["events"][0]["actor"] == {"id": "multi-1", "role": "supervisor"}


async def test_health_ready_metrics_docs(api: Api) -> None:
    assert (await api.client.get("/health")).json()["status"] == "ok"
    ready = await api.client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    await api.accept(intake_body())
    metrics = await api.client.get("/metrics")
    assert metrics.status_code == 200
    assert 'route="/complaints",service="intake",status="201"' in metrics.text
    await api.client.request("BREW", "/complaints")
    assert 'method="BREW"' not in (await api.client.get("/metrics")).text
    spec = (await api.client.get("/openapi.json")).json()
    accept = spec["paths"]["/complaints"]["post"]
    assert {"201", "401", "409", "412", "422"} <= set(accept["responses"])
    assert (await api.client.get("/docs")).status_code == 200


async def test_ready_says_no_when_the_store_is_gone(api: Api) -> None:
    store = api.client._transport.app.state.store  # type: ignore[attr-defined]
    await store.close()
    response = await api.client.get("/ready")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    await store.open()


@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_connections_the_database_dropped_answer_503_then_recover(
    api: Api, settings: Settings
) -> None:
    """Connections are not pinged before each use: when the server has dropped them (a
    restart, a failover), a request that meets one answers 503 with Retry-After — never a
    500 — and the requests after it work on fresh connections."""
    created = await api.accept(intake_body())
    assert created.status_code == 201
    assert (await api.get("/complaints")).status_code == 200  # pooled connections in use
    admin = settings.url.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        dropped = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (settings.url.database,),
        ).fetchone()
    assert dropped and dropped[0] > 0
    answers = [(await api.get("/complaints")).status_code for _ in range(3)]
    assert 500 not in answers
    assert answers[-1] == 200
    failed = [a for a in answers if a != 200]
    assert set(failed) <= {503}
    again = await api.accept(intake_body(service_number="13900001111"))
    assert again.status_code == 201
    fetched = await api.get(f"/complaints/{again.json()['id']}")
    assert fetched.status_code == 200
