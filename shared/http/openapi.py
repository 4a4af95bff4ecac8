"""The OpenAPI document every service publishes, precise enough for generators and fuzzers to
take at its word.

FastAPI derives paths, parameters and bodies from the routes. What it cannot see is said here,
once for every service: the bearer scheme and which operations need it; the errors that the
middleware and the exception handlers answer on every route (`application/problem+json` with
the `Problem` schema, never `application/json`); and the response headers clients rely on.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from shared.http.errors import PROBLEM_JSON, Problem

BEARER = "bearer"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

#: Response headers, declared once (components.headers) and referred to by each response.
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's correlation id (yours if you sent a UUID): find its "
        "logs, and the events it wrote (`correlation_id` in the history)",
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": 'The complaint\'s version, quoted ("3"): send it back as `If-Match`',
        "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
    },
    "Location": {
        "description": "Where the new complaint is read",
        "schema": {"type": "string", "format": "uri-reference"},
    },
    "Content-Location": {
        "description": "Where the complaint in the body is read",
        "schema": {"type": "string", "format": "uri-reference"},
    },
    "Event-Position": {
        "description": "Global position of the last event the command wrote: pass it as "
        "`min_position` to a list to read your own write (absent when nothing was written)",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the first answer to the same Idempotency-Key "
        "and body, given again; nothing was appended",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}

#: Errors answered on every route that uses the store, by what runs around it: (status,
#: description, headers).
AROUND_EVERY_ROUTE: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        503,
        "The database could not be reached: retry after `Retry-After` seconds (with the "
        "same Idempotency-Key, if the request had one)",
        ("Retry-After",),
    ),
)
#: Errors of routes that need a token (the auth dependency and the per-client rate limit).
AROUND_AUTHENTICATED: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (401, "Missing or invalid token", ()),
    (403, "The token's roles may not do this", ()),
    (
        429,
        "Too many requests from this client: retry after `Retry-After` seconds",
        ("Retry-After",),
    ),
)
#: Errors of every route that takes parameters (path, query or header), from validation.
AROUND_PARAMETERS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (422, "Invalid parameters: each bad one is named in `errors`", ()),
)
#: Errors of every route with a body (the command guard reads bodies and Idempotency-Keys).
AROUND_BODIES: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (400, "Malformed JSON, or a malformed Idempotency-Key", ()),
    (409, "Illegal in the current status, or the same Idempotency-Key is still running", ()),
    (413, "Body too large", ()),
    (415, "Body is not application/json", ()),
    (422, "Invalid fields, or an Idempotency-Key reused with another body", ()),
)


def install_openapi(app: FastAPI, models: tuple[type[BaseModel], ...] = ()) -> None:
    """Have `app` publish the precise document (built once, on first request); `models` are
    schemas that responses name without a route returning them (a streamed line's)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = precise_openapi(app, (Problem, *models))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def precise_openapi(app: FastAPI, models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in models:
        schemas.update(component_schemas(model))
    components["headers"] = HEADERS
    components["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A JWT with `sub`, `roles` and `exp` (locally: `make token ROLE=agent`)",
        }
    }
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            _make_precise(operation)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def component_schemas(model: type[BaseModel]) -> dict[str, Any]:
    """A model and the models it refers to, as components."""
    schema = model.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    defs = schema.pop("$defs", {})
    return {model.__name__: schema, **defs}


def _make_precise(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        parameter["schema"] = _without_null(parameter["schema"])
    responses: dict[str, Any] = operation.setdefault("responses", {})
    authenticated = "401" in responses
    operation["security"] = [{BEARER: []}] if authenticated else []
    around: list[tuple[int, str, tuple[str, ...]]] = []
    if authenticated:  # (they read or write the store)
        around += [*AROUND_EVERY_ROUTE, *AROUND_AUTHENTICATED]
    if operation.get("parameters"):
        around += AROUND_PARAMETERS
    if "requestBody" in operation:
        around += AROUND_BODIES
    for code, description, headers in around:
        responses.setdefault(str(code), {"description": description})
        if headers:
            responses[str(code)].setdefault("headers", {}).update(_refs(headers))
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
        response.setdefault("headers", {}).update(_refs(("X-Request-ID",)))
    _success_headers(responses, "requestBody" in operation)


def _success_headers(responses: dict[str, Any], command: bool) -> None:
    """ETag on every answer that is a complaint, Content-Location and Event-Position on a
    command's, Location on a new one; Idempotent-Replayed on every command's."""
    for status, response in responses.items():
        if not (status.isdigit() and 200 <= int(status) < 300):
            continue
        shown = response.get("content", {}).get("application/json", {}).get("schema", {})
        complaint = shown.get("$ref", "").endswith("/ComplaintView")
        names: list[str] = []
        if complaint:
            names += ["ETag"]
            if command:
                names += ["Content-Location", "Event-Position"]
            if status == "201":
                names += ["Location"]
        if command:
            names += ["Idempotent-Replayed"]
        response.setdefault("headers", {}).update(_refs(tuple(names)))


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without its `null` variant: a header or query parameter is
    either absent or a string (`X-Channel: null` is not an absent channel)."""
    variants = [v for v in schema.get("anyOf", []) if v != {"type": "null"}]
    if not variants or len(variants) == len(schema["anyOf"]):
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**rest, **variants[0]} if len(variants) == 1 else {**rest, "anyOf": variants}


def _refs(names: tuple[str, ...]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}
