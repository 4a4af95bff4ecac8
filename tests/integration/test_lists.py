"""GET /complaints from the read model: filters and cursors return every match exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from services.escalation.main import create_app as create_escalation_app
from shared.domain.clock import FixedClock
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import TokenFactory, intake_body
from tests.integration.conftest import Api, database_blobs, serving
from tests.integration.test_escalation import post as esc_post
from tests.integration.test_investigation import BODIES, command

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


# ------------------------------------------------------------------------ wave 2 (issue 17)
@pytest.fixture
async def esc(settings: Settings, clock: FixedClock, token: TokenFactory) -> AsyncIterator[Api]:
    app = create_escalation_app(
        settings.model_copy(update={"deadline_watch_enabled": False}), clock=clock
    )
    async with serving(app, token) as client:
        yield client


async def _page(api: Api, params: list[tuple[str, str]], role: str = "agent") -> httpx.Response:
    return await api.client.get("/complaints", params=params, headers=api.headers(role))


async def _ids(api: Api, **params: str) -> set[str]:
    return {i["id"] for i in await _all_pages(api, 50, **params)}


async def _settled(api: Api, *answers: httpx.Response) -> None:
    last = max(a.json()["position"] for a in answers)
    assert (await api.get("/complaints", min_position=str(last), limit="1")).status_code == 200


@pytest.mark.parametrize(
    ("app", "path", "params", "takes"),
    [
        ("api", "/complaints", {"stauts": "accepted"}, "status"),
        ("api", "/complaints", {"status": "accepted", "foo": "1", "bar": ""}, "acceptance_no"),
        ("api", "/complaints/{id}", {"asof": "2026-11-22T10:00:00+08:00"}, "as_of"),
        ("api", "/complaints/{id}/history", {"verbose": "1"}, None),
        ("api", "/health", {"x": "1"}, None),
        ("cb", "/reports/improvement", {"since": "2026-11-01T00:00:00+08:00"}, "from"),
    ],
)
async def test_unknown_query_parameters_are_400_naming_them_on_every_route(
    api: Api, cb: Api, app: str, path: str, params: dict[str, str], takes: str | None
) -> None:
    client = {"api": api, "cb": cb}[app]
    created = (await api.accept(intake_body())).json()
    path = path.replace("{id}", created["id"])
    answer = await client.get(path, "supervisor", **params)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    unknown = sorted(k for k in params if k not in {"status"})
    assert [e["field"] for e in problem["errors"]] == unknown
    assert all(name in problem["detail"] for name in unknown)
    if takes:
        assert takes in problem["detail"]
    else:
        assert "it takes none" in problem["detail"]
    # The same route with only what it takes answers.
    known = {k: v for k, v in params.items() if k not in unknown}
    assert (await client.get(path, "supervisor", **known)).status_code == 200


async def test_every_operation_documents_the_400(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    operations = [op for item in spec["paths"].values() for op in item.values()]
    assert operations and all("400" in op["responses"] for op in operations)


async def test_unknown_query_parameters_on_a_command_are_400_and_append_nothing(
    api: Api, inv: Api
) -> None:
    """With an Idempotency-Key too: the 400 is not kept as the key's answer (the request's
    fingerprint leaves the query out), so the corrected retry under the same key acts."""
    cid = (await api.accept(intake_body())).json()["id"]
    keyed = inv.headers("supervisor", **{"Idempotency-Key": "assign-once"})
    refused = await inv.client.post(
        f"/complaints/{cid}/assignment",
        params={"dry_run": "1"},
        json=BODIES["assignment"],
        headers=keyed,
    )
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"][0]["field"] == "dry_run"
    assert (await inv.get(f"/complaints/{cid}")).json()["version"] == 1
    acted = await inv.client.post(
        f"/complaints/{cid}/assignment", json=BODIES["assignment"], headers=keyed
    )
    assert acted.status_code == 200, acted.text
    assert (await inv.get(f"/complaints/{cid}")).json()["version"] == 2
    refused_acceptance = await api.client.post(
        "/complaints", params={"x": "1"}, json=intake_body(), headers=api.headers()
    )
    assert refused_acceptance.status_code == 400


async def test_repeated_status_matches_either(api: Api, seeded: list[dict[str, Any]]) -> None:
    both = [("status", "refused"), ("status", "accepted"), ("limit", "200")]
    items = (await _page(api, both)).json()["items"]
    assert {i["id"] for i in items} == {c["id"] for c in seeded}
    one = (await _page(api, [("status", "refused"), ("status", "archived")])).json()["items"]
    assert {i["id"] for i in one} == {c["id"] for c in seeded[:2]}
    wrong = await _page(api, [("status", "refused"), ("status", "lost")])
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"].startswith("query.status")


async def test_department_investigator_level_and_vip_tier(api: Api, inv: Api, esc: Api) -> None:
    gold = await api.accept(
        intake_body(
            customer={"id": "cust-g", "name": "n", "phone": "13800000001", "vip_tier": "gold"}
        )
    )
    plain, escalated = (await api.accept(intake_body())).json(), gold.json()
    other = {"department": "billing-desk", "investigator": "inv-7", "complexity": "simple"}
    assert (await command(inv, plain["id"], "assignment", other)).status_code == 200
    for step in ("assignment", "findings", "resolution", "reply"):
        assert (await command(inv, escalated["id"], step, BODIES[step])).status_code == 200
    body = {"trigger": "customer_dissatisfied", "reason": "不满意", "to_level": "provincial"}
    last = await esc_post(esc, f"/complaints/{escalated['id']}/escalation", body, "callback")
    assert last.status_code == 200, last.text
    await _settled(api, last)

    assert await _ids(api, department="network-ops") == {escalated["id"]}
    assert await _ids(api, department="billing-desk") == {plain["id"]}
    assert await _ids(api, investigator="inv-42") == {escalated["id"]}
    assert await _ids(api, investigator="inv-7", department="billing-desk") == {plain["id"]}
    assert await _ids(api, investigator="inv-7", department="network-ops") == set()
    assert await _ids(api, level="provincial") == {escalated["id"]}
    assert await _ids(api, level="city") == {plain["id"]}
    assert await _ids(api, vip_tier="gold") == {escalated["id"]}
    assert await _ids(api, vip_tier="silver") == set()


async def test_phone_finds_contact_phone_or_service_number_until_erased(
    api: Api, store: ComplaintStore
) -> None:
    def body(customer: str, phone: str, service: str) -> dict[str, Any]:
        return intake_body(
            customer={"id": customer, "name": "n", "phone": phone}, service_number=service
        )

    first = await api.accept(body("cust-p1", "13900001111", "0755-88881234"))
    second = await api.accept(body("cust-p2", "13900002222", "13900001111"))
    await _settled(api, first, second)
    a, b = first.json()["id"], second.json()["id"]
    assert await _ids(api, phone="13900001111") == {a, b}  # a's phone, b's service number
    assert await _ids(api, phone="139-0000-1111") == {a, b}
    assert await _ids(api, phone=" 139 0000 1111 ") == {a, b}
    assert await _ids(api, phone="075588881234") == {a}
    assert await _ids(api, phone="0755-8888-1234") == {a}
    assert await _ids(api, phone="13900002222") == {b}
    assert await _ids(api, phone="13900003333") == set()
    assert await _ids(api, phone="13900001111", customer_id="cust-p2") == {b}

    # The database holds digests, never the numbers: no read model, nor any other table.
    blobs = await database_blobs(store.engine)
    for number in ("13900001111", "13900002222", "88881234"):
        assert [t for t, blob in blobs.items() if number.encode() in blob] == [], number

    erased = await api.client.post("/customers/cust-p1/erasure", headers=api.headers("admin"))
    assert erased.status_code == 200, erased.text
    head = await store.ping()
    await api.get("/complaints", min_position=str(head), limit="1")
    assert await _ids(api, phone="075588881234") == set()
    assert await _ids(api, phone="13900001111") == {b}  # still b's own service number


async def test_acceptance_number_with_or_without_dashes(
    api: Api, seeded: list[dict[str, Any]]
) -> None:
    wanted = seeded[3]
    number = wanted["acceptance_no"]
    bare = number.replace("-", "")
    for given in (number, bare, f"{bare[:4]}-{bare[4:]}"):
        assert await _ids(api, acceptance_no=given) == {wanted["id"]}, given
    assert await _ids(api, acceptance_no=bare[:-1]) == set()


def _next_running(item: dict[str, Any]) -> str | None:
    running = [d["due_at"] for d in item["deadlines"] if d["state"] == "running"]
    return min(running, default=None)


@pytest.mark.parametrize("limit", [1, 4, 200])
async def test_sort_by_due_orders_by_the_next_due_time_and_pages_once(
    api: Api, seeded: list[dict[str, Any]], clock: FixedClock, limit: int
) -> None:
    # Three more accepted at the same instant: equal due times, told apart by id.
    answers = [await api.accept(intake_body()) for _ in range(3)]
    await _settled(api, *answers)
    same = [a.json() for a in answers]
    items = await _all_pages(api, limit, sort="due")
    ids = [i["id"] for i in items]
    assert sorted(ids) == sorted([c["id"] for c in seeded] + [c["id"] for c in same])
    keys = [_next_running(i) for i in items]
    counting = [k for k in keys if k is not None]
    assert keys == counting + [None] * (len(keys) - len(counting))  # none counting: last
    parsed = [datetime.fromisoformat(k) for k in counting]
    assert parsed == sorted(parsed)
    tied = [i["id"] for i in items if i["id"] in {c["id"] for c in same}]
    assert tied == sorted(tied)
    refused = {c["id"] for c in seeded[:2]}
    assert set(ids[-2:]) == refused  # refused: no limit counting
    newest = await _all_pages(api, limit)
    assert sorted(i["id"] for i in newest) == sorted(ids)  # the same list, other order


async def test_due_before_finds_a_running_limit_due_by_then(
    api: Api, seeded: list[dict[str, Any]], clock: FixedClock
) -> None:
    items = await _all_pages(api, 200)
    due = sorted({datetime.fromisoformat(d["due_at"]) for i in items for d in i["deadlines"]})
    cut = due[len(due) // 2]
    expected = {
        i["id"]
        for i in items
        if any(
            d["state"] == "running" and datetime.fromisoformat(d["due_at"]) < cut
            for d in i["deadlines"]
        )
    }
    assert expected and expected != {i["id"] for i in items}
    assert await _ids(api, due_before=cut.isoformat()) == expected
    assert await _ids(api, due_before=cut.isoformat(), sort="due") == expected
    assert await _ids(api, due_before=cut.isoformat(), overdue="false") == expected
    assert await _ids(api, due_before=cut.isoformat(), overdue="true") == set()
    assert await _ids(api, due_before=(due[0]).isoformat()) == set()
    # Once they have passed they are overdue, no longer due.
    clock.advance(timedelta(days=40))
    assert await _ids(api, due_before=(cut + timedelta(days=80)).isoformat()) == set()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"level": "mayor"}, "level"),
        ({"level": ""}, "level"),
        ({"vip_tier": "platinum"}, "vip_tier"),
        ({"department": ""}, "department"),
        ({"department": "net\x00ops"}, "department"),
        ({"investigator": "inv\x1f"}, "investigator"),
        ({"investigator": "x" * 201}, "investigator"),
        ({"due_before": "2026-12-01T10:00:00"}, "due_before"),
        ({"due_before": "tomorrow"}, "due_before"),
        ({"due_before": ""}, "due_before"),
        ({"due_before": "9999-12-31T00:00:00+00:00"}, "due_before"),
        ({"phone": ""}, "phone"),
        ({"phone": "---"}, "phone"),
        ({"phone": "139\x000000"}, "phone"),
        ({"phone": "1" * 41}, "phone"),
        ({"acceptance_no": "---"}, "acceptance_no"),
        ({"sort": "oldest"}, "sort"),
        ({"sort": ""}, "sort"),
    ],
)
async def test_bad_new_filters_are_422_naming_the_field(
    api: Api, params: dict[str, str], field: str
) -> None:
    answer = await api.client.get("/complaints", params=params, headers=api.headers())
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in answer.json()["errors"]] == [f"query.{field}"]


async def test_a_cursor_of_one_order_is_a_place_in_the_other(
    api: Api, seeded: list[dict[str, Any]]
) -> None:
    """A cursor names its row by its keys in both orders (the schema states one form for
    both): given to the other order, the page goes on after that row there."""
    newest = [i["id"] for i in (await api.get("/complaints", limit="200")).json()["items"]]
    by_due = [
        i["id"] for i in (await api.get("/complaints", limit="200", sort="due")).json()["items"]
    ]
    first_newest = (await api.get("/complaints", limit="1")).json()
    first_due = (await api.get("/complaints", limit="1", sort="due")).json()
    row, cursor = first_newest["items"][0]["id"], first_newest["next_cursor"]
    after = await api.get("/complaints", sort="due", cursor=cursor, limit="200")
    assert [i["id"] for i in after.json()["items"]] == by_due[by_due.index(row) + 1 :]
    row, cursor = first_due["items"][0]["id"], first_due["next_cursor"]
    after = await api.get("/complaints", cursor=cursor, limit="200")
    assert [i["id"] for i in after.json()["items"]] == newest[newest.index(row) + 1 :]
