"""Bad input gets a clear 4xx problem+json, stores nothing, and never a 500."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from services.callback.main import create_app as create_callback_app
from services.escalation.main import create_app as create_escalation_app
from services.intake.main import create_app as create_intake_app
from services.investigation.main import create_app as create_investigation_app
from shared.domain.clock import FixedClock
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import START, TokenFactory, intake_body, make_settings
from tests.integration.conftest import Api, serving

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


async def test_an_if_match_that_names_no_version_is_refused_as_malformed(api: Api) -> None:
    """The schema states the form (`"3"`, 3 or `*`), and the server refuses what does not
    have it as it refuses any malformed parameter: 422 naming it, the body checked too. A
    well-formed version the complaint has moved on from is 412."""
    cid = (await api.accept(intake_body())).json()["id"]
    headers = api.headers(**{"If-Match": "not-a-version"})
    bad = await api.client.post(f"/complaints/{cid}/refusal", json={"reason": 3}, headers=headers)
    assert bad.status_code == 422
    assert {"header.if-match", "reason"} <= {e["field"] for e in bad.json()["errors"]}
    body = {"reason": "out_of_scope", "explanation": "x", "redirect": "y"}
    malformed = await api.client.post(f"/complaints/{cid}/refusal", json=body, headers=headers)
    assert malformed.status_code == 422
    assert [e["field"] for e in malformed.json()["errors"]] == ["header.if-match"]
    stale = await api.client.post(
        f"/complaints/{cid}/refusal", json=body, headers=api.headers(**{"If-Match": 'W/"9"'})
    )
    assert stale.status_code == 412
    assert (await api.get(f"/complaints/{cid}")).json()["version"] == 1


# ----------------------------------------------------------------------------- free text
ZERO_WIDTH_ONLY = "\u200b\u200c\u200d\u2060\ufeff"
#: Shows as "abcexe.png".
RIGHT_TO_LEFT_OVERRIDE = "abc\u202egnp.exe"
#: A real complaint as a customer writes it: full-width punctuation, brackets, quotes, a
#: number list, an emoji, line breaks.
CHINESE_COMPLAINT = (
    "您好!我是贵公司的老用户,家里(北京市朝阳区望京西园三区)的宽带从 11 月 18 日起"
    "每晚 8 点到 11 点频繁掉线,测速只有 2Mbps(套餐是 300M)。\n"
    "已经打过三次 10000 号,工单号 GD-20261118-0032,客服说“已派单”,至今没人上门……😡\n"
    "要求:1. 尽快派人维修;2. 减免本月月租《宽带服务协议》第 5 条。"
)


def _customer(name: str) -> dict[str, Any]:
    return {"id": "cust-1", "name": name, "phone": "13812341234"}


def _field_error(problem: dict[str, Any], field: str) -> str:
    messages = [e["message"] for e in problem.get("errors") or [] if e["field"] == field]
    assert messages, problem
    return messages[0]


UNSAFE_INTAKE = [
    pytest.param(_customer(ZERO_WIDTH_ONLY), "customer", "customer.name", id="zero-width-name"),
    pytest.param(_customer(" \u3000\u200b\t"), "customer", "customer.name", id="blank-name"),
    pytest.param(
        _customer(RIGHT_TO_LEFT_OVERRIDE), "customer", "customer.name", id="override-name"
    ),
    pytest.param("投诉\u2067内容\u2069如下", "description", "description", id="isolate"),
    pytest.param("退款\u200f", "demand", "demand", id="right-to-left-mark"),
    pytest.param("信号\u061c差", "demand", "demand", id="arabic-letter-mark"),
    pytest.param("next line \x85 inside", "description", "description", id="c1-next-line"),
    pytest.param("\x9b31m red", "demand", "demand", id="c1-csi"),
    pytest.param(
        [{"kind": "call_record", "ref": "CDR-\u202e1"}], "evidence", "evidence.0.ref", id="ref"
    ),
    pytest.param(
        [{"kind": "call_record", "ref": "CDR-1", "summary": "\ufeff"}],
        "evidence",
        "evidence.0.summary",
        id="optional-summary",
    ),
]


@pytest.mark.parametrize(("value", "key", "field"), UNSAFE_INTAKE)
async def test_unsafe_text_is_refused_naming_the_field(
    api: Api, store: ComplaintStore, value: Any, key: str, field: str
) -> None:
    position = await store.ping()
    response = await api.accept(intake_body(**{key: value}), **{"Idempotency-Key": "unsafe"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    message = _field_error(response.json(), field)
    assert "any script" in message or "visible character" in message
    assert await store.ping() == position
    listed = await api.get("/complaints")
    assert listed.status_code == 200 and listed.json()["items"] == []


async def test_chinese_and_other_scripts_are_accepted_as_written(api: Api) -> None:
    body = intake_body(
        customer=_customer("欧阳娜娜"),
        description=CHINESE_COMPLAINT,
        demand="尽快修复 👍🏽 —— 谢谢!👨\u200d👩\u200d👧",
        evidence=[{"kind": "customer_statement", "ref": "مرحبا بكم", "summary": "שלום, Ελληνικά"}],
    )
    accepted = await api.accept(body)
    assert accepted.status_code == 201, accepted.text
    read = (await api.get(f"/complaints/{accepted.json()['id']}")).json()
    assert read["customer"]["name"] == "欧阳娜娜"
    assert read["description"] == CHINESE_COMPLAINT
    assert read["demand"] == "尽快修复 👍🏽 —— 谢谢!👨\u200d👩\u200d👧"
    assert read["evidence"][0]["ref"] == "مرحبا بكم"


#: The apps by the name their fixtures have elsewhere, each with its background jobs off.
APPS: dict[str, Any] = {
    "api": create_intake_app,
    "inv": create_investigation_app,
    "esc": create_escalation_app,
    "cb": create_callback_app,
}
QUIET = {"dispatcher_enabled": False, "deadline_watch_enabled": False}


UNSAFE_COMMANDS = [
    pytest.param(
        "api",
        "/complaints/{id}/refusal",
        {"reason": "out_of_scope", "explanation": "第三方应用", "redirect": "请联系\u202e客服"},
        "redirect",
        id="intake-refusal",
    ),
    pytest.param(
        "inv",
        "/complaints/{id}/evidence",
        {"kind": "system_log", "ref": ZERO_WIDTH_ONLY},
        "ref",
        id="investigation-evidence",
    ),
    pytest.param(
        "inv",
        "/complaints/{id}/resolution",
        {
            "measures": ["更换基站传输板", "\u200b"],
            "owner": "eng-1",
            "due_at": "2026-12-01T18:00:00+08:00",
        },
        "measures.1",
        id="investigation-measures",
    ),
    pytest.param(
        "inv",
        "/complaints/{id}/pause",
        {"reason": "等待\x85凭证"},
        "reason",
        id="investigation-pause",
    ),
    pytest.param(
        "esc",
        "/complaints/{id}/escalation",
        {
            "trigger": "customer_dissatisfied",
            "reason": "\u2066升级\u2069",
            "to_level": "provincial",
        },
        "reason",
        id="escalation",
    ),
    pytest.param(
        "esc",
        "/complaints/{id}/review",
        {"outcome": "upheld", "notes": "\ufeff\u2060"},
        "notes",
        id="escalation-review",
    ),
    pytest.param(
        "esc",
        "/appeals",
        {
            "regulator_ref": "MIIT-SS-2026-000001",
            "due_at": "2026-12-01T18:00:00+08:00",
            "complaint": intake_body(customer=_customer(RIGHT_TO_LEFT_OVERRIDE)),
        },
        "complaint.customer.name",
        id="escalation-appeal",
    ),
    pytest.param(
        "cb",
        "/complaints/{id}/callback",
        {"satisfaction": "satisfied", "resolved": True, "comments": "\u200b"},
        "comments",
        id="callback",
    ),
    pytest.param(
        "cb",
        "/complaints/{id}/archive",
        {"summary": RIGHT_TO_LEFT_OVERRIDE},
        "summary",
        id="archive",
    ),
]


@pytest.mark.parametrize(("service", "path", "body", "field"), UNSAFE_COMMANDS)
async def test_every_service_refuses_unsafe_text(
    api: Api,
    store: ComplaintStore,
    settings: Settings,
    clock: FixedClock,
    token: TokenFactory,
    service: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    created = (await api.accept(intake_body())).json()
    position = await store.ping()
    app = APPS[service](settings.model_copy(update=QUIET), clock=clock)
    async with serving(app, token) as client:
        response = await client.client.post(
            path.format(id=created["id"]), json=body, headers=client.headers("supervisor")
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert _field_error(response.json(), field)
    assert await store.ping() == position


def _request_strings(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every string schema in the request bodies of `spec`, with where it is."""
    schemas = spec["components"]["schemas"]
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(node: Any, where: str, seen: frozenset[str]) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, where, seen)
        elif isinstance(node, dict):
            ref = node.get("$ref", "")
            name = ref.rsplit("/", 1)[-1]
            if ref and name not in seen:
                walk(schemas[name], name, seen | {name})
            if node.get("type") == "string":
                found.append((where, node))
            for key, value in node.items():
                walk(value, f"{where}.{key}" if key not in ("anyOf", "items") else where, seen)

    for path, item in spec["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody", {}).get("content", {})
            walk(body, f"{method.upper()} {path}", frozenset())
    return found


def test_every_free_text_field_states_its_rule_in_the_schema() -> None:
    """Each string of every request body is a code, a time, an e-mail address, a pattern-bound
    id or free text carrying the free-text pattern, so a client (or fuzzer) that follows the
    schema never sends what the service refuses."""
    settings = make_settings("sqlite:///unused.sqlite3")
    free_text: list[str] = []
    for create_app in (
        create_intake_app,
        create_investigation_app,
        create_escalation_app,
        create_callback_app,
    ):
        spec = create_app(settings, clock=FixedClock(START)).openapi()
        for where, schema in _request_strings(spec):
            if "maxLength" in schema and "format" not in schema:
                free_text.append(where)
                pattern = re.compile(schema["pattern"])
                assert pattern.search(CHINESE_COMPLAINT), where
                for unsafe in (ZERO_WIDTH_ONLY, RIGHT_TO_LEFT_OVERRIDE, "a\x85b", " \u3000 "):
                    assert not pattern.search(unsafe), (where, unsafe)
            elif where != "Remedy.properties.amount":  # money: a decimal string, not text
                assert {"enum", "format", "pattern"} & schema.keys(), where
    assert len(free_text) >= 25  # names, descriptions, reasons, notes, refs, summaries...


# ------------------------------------------------------------------------ duplicate keys
def _with_duplicate(body: dict[str, Any], inside: str, key: str, value: Any) -> bytes:
    """`body` as JSON text whose object under `inside` (a top-level key, or "" for the body
    itself) gives `key` a second time, with `value`: JSON text can say it, a dict cannot."""
    text = json.dumps(body, ensure_ascii=False)
    extra = f", {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"
    if not inside:
        return (text[:-1] + extra + "}").encode()
    nested = json.dumps(body[inside], ensure_ascii=False)
    assert nested.endswith("}")
    return text.replace(nested, nested[:-1] + extra + "}", 1).encode()


def _evidence_body() -> dict[str, Any]:
    return intake_body(evidence=[{"kind": "call_record", "ref": "CDR-1"}])


DUPLICATED = [
    pytest.param(
        _with_duplicate(intake_body(), "", "description", "另一个说法"), ["description"], id="top"
    ),
    pytest.param(
        _with_duplicate(intake_body(), "customer", "name", "\u200b"),
        ["customer.name"],
        id="nested",
    ),
    pytest.param(
        _with_duplicate(_evidence_body(), "", "channel", "web").replace(
            b'"ref": "CDR-1"', b'"ref": "CDR-1", "ref": "CDR-2"'
        ),
        ["channel", "evidence.0.ref"],
        id="two",
    ),
]


@pytest.mark.parametrize(("raw", "fields"), DUPLICATED)
async def test_duplicate_keys_are_400_and_consume_no_idempotency_key(
    api: Api, store: ComplaintStore, raw: bytes, fields: list[str]
) -> None:
    position = await store.ping()
    headers = api.headers(**{"Content-Type": "application/json", "Idempotency-Key": "dup-1"})
    refused = await api.client.post("/complaints", content=raw, headers=headers)
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"] == PROBLEM
    problem = refused.json()
    assert problem["type"] == "urn:complaints:problem:duplicate-keys"
    assert [e["field"] for e in problem["errors"]] == fields
    assert all(field in problem["detail"] for field in fields)
    assert await store.ping() == position
    # The key was not used up: the same key with a proper body is a first acceptance.
    accepted = await api.accept(intake_body(), **{"Idempotency-Key": "dup-1"})
    assert accepted.status_code == 201, accepted.text
    assert "idempotent-replayed" not in accepted.headers
    assert await store.ping() > position


async def test_duplicate_keys_in_a_claimed_command_leave_its_key_free(
    api: Api, store: ComplaintStore
) -> None:
    created = (await api.accept(intake_body())).json()
    path = f"/complaints/{created['id']}/refusal"
    refusal = {"reason": "out_of_scope", "explanation": "第三方应用", "redirect": "应用提供商"}
    headers = api.headers("supervisor", **{"Idempotency-Key": "refuse-1"})
    position = await store.ping()
    refused = await api.client.post(
        path,
        content=_with_duplicate(refusal, "", "reason", "time_barred"),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["errors"][0]["field"] == "reason"
    assert await store.ping() == position
    done = await api.client.post(path, json=refusal, headers=headers)
    assert done.status_code == 200, done.text
    assert done.json()["refusal"]["reason"] == "out_of_scope"


@pytest.mark.parametrize(
    ("service", "path", "body"),
    [
        ("inv", "/complaints/{id}/pause", {"reason": "等待客户提供缴费凭证"}),
        ("esc", "/complaints/{id}/review", {"outcome": "upheld", "notes": "维持"}),
        ("cb", "/complaints/{id}/archive", {"summary": "已解决"}),
    ],
)
async def test_every_service_refuses_duplicate_keys(
    api: Api,
    store: ComplaintStore,
    settings: Settings,
    clock: FixedClock,
    token: TokenFactory,
    service: str,
    path: str,
    body: dict[str, Any],
) -> None:
    created = (await api.accept(intake_body())).json()
    position = await store.ping()
    key, value = next(iter(body.items()))
    app = APPS[service](settings.model_copy(update=QUIET), clock=clock)
    async with serving(app, token) as client:
        response = await client.client.post(
            path.format(id=created["id"]),
            content=_with_duplicate(body, "", key, value),
            headers=client.headers("supervisor", **{"Content-Type": "application/json"}),
        )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["field"] == key
    assert await store.ping() == position
