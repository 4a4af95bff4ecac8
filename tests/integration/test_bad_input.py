"""Bad input gets a clear 4xx problem+json, stores nothing, and never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.store.facade import ComplaintStore
from tests.conftest import intake_body
from tests.integration.conftest import Api

PROBLEM = "application/problem+json"
#: A client's X-Request-ID (a UUID: kept as the correlation id).
REQUEST_ID = "0b6f3c1e-7a42-4d9b-8e15-c2a97d3f6b08"


def _without(field: str) -> dict[str, Any]:
    body = intake_body()
    del body[field]
    return body


HOSTILE_BODIES: list[Any] = [
    {},
    [],
    "a string",
    42,
    None,
    intake_body(channel="pigeon"),
    intake_body(business_type="satellite"),
    intake_body(category="weather"),
    intake_body(reply_channel="fax"),
    intake_body(customer={"id": "c", "name": "n", "phone": "13800000000", "vip_tier": "platinum"}),
    intake_body(customer={"id": "c", "name": "n", "phone": "not-a-phone"}),
    intake_body(customer={"id": "c", "name": "n", "phone": "13800000000", "email": "nope"}),
    intake_body(customer={"id": "c" * 500, "name": "n", "phone": "13800000000"}),
    intake_body(customer="cust-1"),
    intake_body(description="x" * 100_000),
    intake_body(description=""),
    intake_body(description="   "),
    intake_body(description="null byte \x00 inside"),
    intake_body(description=["a", "list"]),
    intake_body(demand=123),
    intake_body(occurred_at="yesterday"),
    intake_body(occurred_at="2026-11-20T08:30:00"),  # no offset
    intake_body(occurred_at="2099-01-01T00:00:00+08:00"),  # in the future
    intake_body(received_at="2026-11-01T00:00:00+08:00"),  # before it happened
    intake_body(channel="web", received_at="9999-12-31T23:00:00+00:00"),
    intake_body(
        channel="web",
        occurred_at="0001-01-01T00:00:00+05:00",
        received_at="0001-01-01T00:00:00+05:00",
    ),
    intake_body(evidence=[{"kind": "rumour", "ref": "x"}]),
    intake_body(evidence="CDR-1"),
    intake_body(evidence=[{"kind": "call_record", "ref": "x"}] * 51),
    intake_body(reply_channel="email", customer={"id": "c", "name": "n", "phone": "13800000000"}),
    intake_body(unexpected_field="surprise"),
    intake_body(service_number="'; DROP TABLE complaints_events; --"),
    _without("channel"),
    _without("customer"),
    _without("occurred_at"),
]


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
async def test_hostile_bodies_are_refused_and_store_nothing(
    api: Api, store: ComplaintStore, body: Any
) -> None:
    position = await store.ping()
    response = await api.client.post(
        "/complaints",
        content=json.dumps(body, ensure_ascii=False),
        headers=api.headers(**{"Content-Type": "application/json"}),
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert problem["status"] == response.status_code
    assert "Traceback" not in response.text
    assert await store.ping() == position


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"channel": "hotline",}', b"\xff\xfe garbage", b"[1, 2", b'{"a": NaN'],
)
async def test_malformed_json_is_400(api: Api, store: ComplaintStore, raw: bytes) -> None:
    position = await store.ping()
    response = await api.client.post(
        "/complaints",
        content=raw,
        headers=api.headers(**{"Content-Type": "application/json"}),
    )
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"] == PROBLEM
    assert await store.ping() == position


async def test_deeply_nested_json_with_a_key_is_refused(api: Api, store: ComplaintStore) -> None:
    position = await store.ping()
    response = await api.client.post(
        "/complaints",
        content=b"[" * 100_000,
        headers=api.headers(**{"Content-Type": "application/json", "Idempotency-Key": "deep"}),
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert await store.ping() == position


async def test_validation_errors_name_each_field(api: Api) -> None:
    body = intake_body(channel="pigeon", customer={"id": "c", "name": "n", "phone": "x"})
    problem = (await api.accept(body)).json()
    fields = {e["field"] for e in problem["errors"]}
    assert {"channel", "customer.phone"} <= fields


async def test_body_too_large_is_413(api: Api) -> None:
    huge = json.dumps(intake_body(description="x" * 300_000))
    response = await api.client.post(
        "/complaints", content=huge, headers=api.headers(**{"Content-Type": "application/json"})
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM


async def test_not_json_is_415(api: Api) -> None:
    response = await api.client.post(
        "/complaints",
        content="channel=hotline",
        headers=api.headers(**{"Content-Type": "application/x-www-form-urlencoded"}),
    )
    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM


async def test_unknown_path_and_method_are_problems(api: Api) -> None:
    missing = await api.client.get("/nowhere", headers=api.headers())
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    wrong = await api.client.delete("/complaints", headers=api.headers())
    assert wrong.status_code == 405 and wrong.headers["content-type"] == PROBLEM
    assert "POST" in wrong.headers["allow"]


async def test_unknown_complaint_is_404(api: Api) -> None:
    path = "/complaints/00000000-0000-4000-8000-000000000000"
    for url in (path, f"{path}/history"):
        response = await api.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"] == PROBLEM
    refused = await api.client.post(
        f"{path}/refusal",
        json={"reason": "out_of_scope", "explanation": "x", "redirect": "y"},
        headers=api.headers(),
    )
    assert refused.status_code == 404
    bad_id = await api.get("/complaints/not-a-uuid")
    assert bad_id.status_code == 422


async def test_bad_idempotency_key_is_400(api: Api) -> None:
    response = await api.accept(intake_body(), **{"Idempotency-Key": "with space"})
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM


async def test_as_of_needs_an_offset(api: Api) -> None:
    created = (await api.accept(intake_body())).json()
    response = await api.get(f"/complaints/{created['id']}", as_of="2026-11-23T10:00:00")
    assert response.status_code == 422


async def test_an_unexpected_failure_is_a_500_problem_without_internals(
    settings: Any, clock: Any, token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from services.intake.main import create_app

    app = create_app(settings, clock=clock)

    async def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals: password=hunter2")

    async with app.router.lifespan_context(app):
        monkeypatch.setattr(app.state.store, "get", broken)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get(
                "/complaints/00000000-0000-4000-8000-000000000000",
                headers={"Authorization": f"Bearer {token('agent')}", "X-Request-ID": REQUEST_ID},
            )
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text and "Traceback" not in response.text
    # The one answer support most needs to trace carries its correlation id.
    assert response.headers["X-Request-ID"] == REQUEST_ID


async def test_methods_the_api_does_not_have_are_405_with_every_allowed_method(api: Api) -> None:
    """Found by contract fuzzing: a PUT with an Idempotency-Key was taken for a write (422)."""
    headers = api.headers(**{"Idempotency-Key": "put-1"})
    for method in ("PUT", "PATCH", "DELETE"):
        answer = await api.client.request(method, "/complaints", json={}, headers=headers)
        assert answer.status_code == 405, (method, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["Allow"] == "GET, POST"  # both routes on the path, not the first


async def test_a_bad_body_is_422_even_with_a_bad_if_match(api: Api) -> None:
    """Found by contract fuzzing: the If-Match check ran before the body was validated."""
    cid = (await api.accept(intake_body())).json()["id"]
    headers = api.headers(**{"If-Match": "not-a-version"})
    bad = await api.client.post(f"/complaints/{cid}/refusal", json={"reason": 3}, headers=headers)
    assert bad.status_code == 422
    body = {"reason": "out_of_scope", "explanation": "x", "redirect": "y"}
    stale = await api.client.post(f"/complaints/{cid}/refusal", json=body, headers=headers)
    assert stale.status_code == 412
