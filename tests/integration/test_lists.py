"""GET /complaints from the read model: filters and cursors return every match exactly once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.domain.clock import FixedClock
from tests.conftest import intake_body
from tests.integration.conftest import Api

REFUSAL = {"reason": "out_of_scope", "explanation": "第三方", "redirect": "应用提供商"}


async def _seed(api: Api, clock: FixedClock) -> list[dict[str, Any]]:
    complaints = []
    for n in range(9):
        clock.advance(timedelta(minutes=1))
        body = intake_body(
            category=["billing", "network_coverage", "other"][n % 3],
            business_type=["mobile", "broadband"][n % 2],
            customer={"id": f"cust-{n % 4}", "name": "n", "phone": "13800000000"},
        )
        response = await api.accept(body, sub=f"agent-{n % 2}")
        assert response.status_code == 201, response.text
        complaints.append(response.json())
    for complaint in complaints[:2]:
        refused = await api.client.post(
            f"/complaints/{complaint['id']}/refusal", json=REFUSAL, headers=api.headers()
        )
        complaint.update(refused.json())
    return complaints


async def _all_pages(api: Api, limit: int, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": str(limit), **params, **({"cursor": cursor} if cursor else {})}
        page = await api.get("/complaints", **query)
        assert page.status_code == 200, page.text
        body = page.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


@pytest.fixture
async def seeded(api: Api, clock: FixedClock) -> list[dict[str, Any]]:
    complaints = await _seed(api, clock)
    last = max(c["position"] for c in complaints)
    caught_up = await api.get("/complaints", min_position=str(last), limit="1")
    assert caught_up.json()["position"] >= last
    return complaints


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({}, lambda c: True),
        ({"status": "refused"}, lambda c: c["status"] == "refused"),
        ({"status": "accepted"}, lambda c: c["status"] == "accepted"),
        ({"category": "billing"}, lambda c: c["category"] == "billing"),
        ({"business_type": "broadband"}, lambda c: c["business_type"] == "broadband"),
        ({"owner": "agent-1"}, lambda c: c["owner"] == "agent-1"),
        ({"customer_id": "cust-2"}, lambda c: c["customer"]["id"] == "cust-2"),
        (
            {"category": "other", "business_type": "mobile"},
            lambda c: c["category"] == "other" and c["business_type"] == "mobile",
        ),
    ],
)
@pytest.mark.parametrize("limit", [1, 4, 200])
async def test_filters_and_cursors_return_every_match_once(
    api: Api, seeded: list[dict[str, Any]], params: dict[str, str], match: Any, limit: int
) -> None:
    items = await _all_pages(api, limit, **params)
    expected = [c for c in reversed(seeded) if match(c)]  # newest first
    assert [i["id"] for i in items] == [c["id"] for c in expected]


async def test_by_acceptance_number(api: Api, seeded: list[dict[str, Any]]) -> None:
    wanted = seeded[4]
    items = await _all_pages(api, 10, acceptance_no=wanted["acceptance_no"])
    assert [i["id"] for i in items] == [wanted["id"]]
    assert items[0]["repeat_of"] == wanted["repeat_of"]
    assert "phone" not in items[0] and "name" not in items[0]


async def test_overdue_follows_the_clock(
    api: Api, seeded: list[dict[str, Any]], clock: FixedClock
) -> None:
    assert await _all_pages(api, 50, overdue="true") == []
    clock.advance(timedelta(days=40))  # every running limit has passed
    overdue = await _all_pages(api, 50, overdue="true")
    on_time = await _all_pages(api, 50, overdue="false")
    refused = {c["id"] for c in seeded if c["status"] == "refused"}
    assert {i["id"] for i in overdue} == {c["id"] for c in seeded} - refused
    assert {i["id"] for i in on_time} == refused  # a refusal answered within its limits
    assert all(d["state"] == "missed" for i in overdue for d in i["deadlines"])


async def test_read_your_own_write(api: Api) -> None:
    created = await api.accept(intake_body())
    position = created.json()["position"]
    assert created.headers["Event-Position"] == str(position)
    page = await api.get(
        "/complaints", min_position=str(position), acceptance_no=created.json()["acceptance_no"]
    )
    assert [i["id"] for i in page.json()["items"]] == [created.json()["id"]]


async def test_bad_list_parameters_are_422(api: Api) -> None:
    for params in (
        {"cursor": "not-a-cursor"},
        {"limit": "0"},
        {"limit": "201"},
        {"status": "lost"},
        {"overdue": "maybe"},
    ):
        response = await api.get("/complaints", **params)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_long_staff_id_does_not_stop_the_read_models(api: Api) -> None:
    """Owners are token subjects, up to 200 characters."""
    long_sub = "agent-" + "x" * 190
    created = await api.accept(intake_body(), sub=long_sub)
    assert created.status_code == 201
    page = await api.get(
        "/complaints",
        min_position=str(created.json()["position"]),
        acceptance_no=created.json()["acceptance_no"],
    )
    assert [i["owner"] for i in page.json()["items"]] == [long_sub]
    ready = (await api.client.get("/ready")).json()
    assert ready["projections"]["complaint_summaries"]["position"] >= created.json()["position"]


@pytest.mark.parametrize(
    "params",
    [
        {"customer_id": "N\x009"},
        {"owner": "fuzzer\x00"},
        {"acceptance_no": "261123\x1f"},
        {"customer_id": "x" * 65},
    ],
)
async def test_control_characters_in_filters_are_422_not_500(
    api: Api, params: dict[str, str]
) -> None:
    answer = await api.client.get("/complaints", params=params, headers=api.headers())
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
