"""What each service's OpenAPI promises generators and fuzzers: errors as problem+json with
their schema, bearer auth, readable operation ids, typed models, the response headers clients
rely on, and the constraints the server enforces."""

from __future__ import annotations

from typing import Any

import pytest

from services.callback.main import create_app as callback_app
from services.escalation.main import create_app as escalation_app
from services.intake.main import create_app as intake_app
from services.investigation.main import create_app as investigation_app
from tests.conftest import make_settings

FACTORIES = {
    "intake": intake_app,
    "investigation": investigation_app,
    "escalation": escalation_app,
    "callback": callback_app,
}

#: Objects whose keys are data, not a shape: an event's data (its shape depends on its type and
#: version), the export line's context and data, what a repeat refusal points to.
FREE_FORM = {
    ("HistoryEntry", "data"),
    ("ExportLine", "ctx"),
    ("ExportLine", "data"),
}


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def spec(request: pytest.FixtureRequest) -> dict[str, Any]:
    app = FACTORIES[request.param](make_settings("sqlite:///unused.sqlite3"))
    document: dict[str, Any] = app.openapi()
    return document


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


def test_every_error_is_problem_json_with_its_schema(spec: dict[str, Any]) -> None:
    wrong = []
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                content = response.get("content", {})
                if content != {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                }:
                    wrong.append((method, path, status, content))
    assert wrong == []
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_bearer_auth_is_declared_where_a_token_is_needed(spec: dict[str, Any]) -> None:
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    for method, path, operation in operations(spec):
        if path in {"/health", "/ready", "/metrics"}:
            assert operation["security"] == [], path
        else:
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)


def test_operation_ids_read_as_what_they_do(spec: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids))
    assert all(i.isidentifier() and not i.endswith(("_get", "_post")) for i in ids), ids
    by_path = {(m, p): o["operationId"] for m, p, o in operations(spec)}
    assert by_path.get(("GET", "/complaints/{complaint_id}")) == "read_complaint"


def test_no_bare_object_where_the_shape_is_known(spec: dict[str, Any]) -> None:
    untyped = []
    for name, schema in spec["components"]["schemas"].items():
        for field, prop in schema.get("properties", {}).items():
            for variant in [prop, *prop.get("anyOf", []), prop.get("items", {})]:
                bare = variant.get("type") == "object" and "properties" not in variant
                free = variant.get("additionalProperties", True) is True
                if bare and free and (name, field) not in FREE_FORM:
                    untyped.append((name, field))
    assert untyped == []


def test_response_headers_are_documented(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    assert set(spec["components"]["headers"]) >= {
        "ETag",
        "Location",
        "Event-Position",
        "Idempotent-Replayed",
        "Retry-After",
        "X-Request-ID",
    }
    read = paths["/complaints/{complaint_id}"]["get"]["responses"]
    assert "ETag" in read["200"]["headers"]
    assert "Retry-After" in read["429"]["headers"]
    for _, _, operation in operations(spec):
        for response in operation["responses"].values():
            assert "X-Request-ID" in response["headers"]
    if "/complaints" in paths and "post" in paths["/complaints"]:
        created = paths["/complaints"]["post"]["responses"]["201"]["headers"]
        assert {"Location", "ETag", "Event-Position", "Idempotent-Replayed"} <= set(created)


def test_the_constraints_the_server_enforces_are_stated(spec: dict[str, Any]) -> None:
    for _, _, operation in operations(spec):
        for parameter in operation.get("parameters", []):
            schema = parameter["schema"]
            if parameter["name"] in {"idempotency-key", "if-match"}:
                stated = [schema, *schema.get("anyOf", [])]
                assert any("pattern" in s for s in stated), parameter
    schemas = spec["components"]["schemas"]
    if "Remedy" in schemas:  # money is a decimal string; a JSON number is refused
        amount = schemas["Remedy"]["properties"]["amount"]
        stated = amount.get("anyOf", [amount])
        assert {s.get("type") for s in stated} == {"string", "null"}
        assert all("pattern" in s for s in stated if s.get("type") == "string")
