"""RFC 9457 problem details for every error, and the one map from domain errors to statuses."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from shared.domain.errors import (
    ComplaintNotFound,
    ConcurrentModification,
    DomainError,
    IdempotencyKeyReused,
    IncidentNotFound,
    InvalidCommand,
    InvalidTransition,
    NotOwner,
    NotPermitted,
    VersionMismatch,
)
from shared.http.routes import allowed_routes
from shared.readmodel.cursor import InvalidCursor
from shared.store.facade import CONNECTION_LOST, StoreNotOpen

log = logging.getLogger("complaints.http")

PROBLEM_JSON = "application/problem+json"
#: The problem slug of an Idempotency-Key used with another request (never stored as its answer).
KEY_REUSED = "idempotency-key-reused"
#: The problem slug of query parameters the route does not take (nor stored as an answer: the
#: request fingerprint leaves the query out, so the corrected retry is the same request).
UNKNOWN_QUERY = "unknown-query-parameter"

#: Domain error → (status, problem slug, title). The only place this mapping lives.
DOMAIN_STATUS: dict[type[DomainError], tuple[int, str, str]] = {
    ComplaintNotFound: (404, "not-found", "Complaint not found"),
    IncidentNotFound: (404, "not-found", "Major incident not found"),
    NotOwner: (403, "not-owner", "Not the complaint's owner"),
    NotPermitted: (403, "not-permitted", "Not permitted here"),
    InvalidTransition: (409, "invalid-transition", "Not allowed in the current status"),
    ConcurrentModification: (409, "concurrent-modification", "Concurrent modification"),
    VersionMismatch: (412, "version-mismatch", "The complaint has moved on"),
    InvalidCommand: (422, "invalid-command", "The command contradicts the complaint"),
    IdempotencyKeyReused: (422, KEY_REUSED, "Idempotency-Key reused"),
}

_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition failed",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class FieldError(BaseModel):
    field: str = Field(examples=["customer.phone"])
    message: str = Field(examples=["String should match pattern '^\\+?[0-9]{5,20}$'"])
    type: str = Field(examples=["string_pattern_mismatch"])


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(examples=["urn:complaints:problem:invalid-transition"])
    title: str = Field(examples=["Not allowed in the current status"])
    status: int = Field(examples=[409])
    detail: str = Field(examples=["Cannot reply a complaint whose status is 'accepted'."])
    instance: str | None = Field(default=None, examples=["/complaints/3f2c…/reply"])
    errors: list[FieldError] | None = None
    current_status: str | None = Field(
        default=None, description="on a 409 for an illegal transition: the complaint's status"
    )
    allowed: list[str] | None = Field(
        default=None,
        description="on a 409 for an illegal transition: the commands this status allows",
        examples=[["POST /complaints/{id}/assignment (investigation)"]],
    )
    owner: str | None = Field(
        default=None, description="on a 403 for a command only the owner may give: who owns it"
    )


def problem_type(slug: str) -> str:
    return f"urn:complaints:problem:{slug}"


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem_type(slug or str(status)),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        if location and location[0] in {"body", "query", "path", "header"}:
            location = location[1:] if location[0] == "body" else location
        errors.append(
            {
                "field": ".".join(location) or "body",
                "message": str(error.get("msg", "invalid")),
                "type": str(error.get("type", "invalid")),
            }
        )
    return errors


def invalid_field(location: str, field: str, message: str) -> RequestValidationError:
    """A 422 naming one field, for what a schema cannot say (e.g. `to` must follow `from`)."""
    return RequestValidationError(
        [{"loc": (location, field), "msg": message, "type": "value_error"}]
    )


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    if any(e["type"] == "json_invalid" for e in errors):
        return problem_response(
            400,
            "The request body is not valid JSON.",
            slug="malformed-json",
            title="Malformed JSON",
            instance=request.url.path,
        )
    return problem_response(
        422,
        f"{len(errors)} field(s) are invalid.",
        slug="validation",
        title="Invalid request",
        instance=request.url.path,
        errors=errors,
    )


async def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return problem_response(
        exc.status_code,
        str(exc.detail) if exc.detail else _TITLES.get(exc.status_code, "Error"),
        instance=request.url.path,
        headers=headers,
    )


class UnknownQueryParameters(Exception):
    """The request names query parameters its route does not take (`deps.known_query_only`)."""

    def __init__(self, unknown: list[str], allowed: list[str]) -> None:
        super().__init__(f"unknown query parameter(s): {', '.join(unknown)}")
        self.unknown = unknown
        self.allowed = allowed


async def _unknown_query_handler(request: Request, exc: Exception) -> JSONResponse:
    """400 naming each unknown parameter and what the route takes instead."""
    assert isinstance(exc, UnknownQueryParameters)
    takes = f"allowed: {', '.join(exc.allowed)}" if exc.allowed else "it takes none"
    return problem_response(
        400,
        f"Unknown query parameter(s): {', '.join(exc.unknown)}; {takes}.",
        slug=UNKNOWN_QUERY,
        title="Unknown query parameter",
        instance=request.url.path,
        errors=[
            {
                "field": name,
                "message": f"not a query parameter of this route; {takes}",
                "type": "unknown_query_parameter",
            }
            for name in exc.unknown
        ],
    )


async def _cursor_handler(request: Request, exc: Exception) -> JSONResponse:
    """A page cursor this API did not issue, on any list: 422 naming it."""
    return await _http_handler(request, StarletteHTTPException(422, str(exc)))


def documented_routes(app: Any) -> list[tuple[re.Pattern[str], set[str], str]]:
    """Each path the API documents: its pattern, its methods and its template (read once)."""
    table: list[tuple[re.Pattern[str], set[str], str]] | None = getattr(
        app.state, "documented_routes", None
    )
    if table is None:
        table = [
            (compile_path(path)[0], {m.upper() for m in item if m.upper() in _HTTP_METHODS}, path)
            for path, item in app.openapi()["paths"].items()
        ]
        app.state.documented_routes = table
    return table


def _allowed_methods(request: Request) -> str:
    """Every method the API documents on this path (Starlette names only the first route's)."""
    path = request.scope["path"]
    table = documented_routes(request.app)
    return ", ".join(sorted({m for regex, ms, _ in table if regex.match(path) for m in ms}))


async def _domain_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, IdempotencyKeyReused):  # found by the command (the guard counts its own)
        request.app.state.metrics.idempotency_conflicts.labels(request.app.state.service).inc()
    status, slug, title = next(
        (mapped for kind, mapped in DOMAIN_STATUS.items() if isinstance(exc, kind)),
        (409, "domain", "Conflict"),
    )
    detail, allowed = str(exc), None
    if isinstance(exc, InvalidTransition):
        allowed = allowed_routes(exc.status)
        detail += f" Allowed now: {', '.join(allowed)}." if allowed else " It takes no command."
    return problem_response(
        status,
        detail,
        slug=slug,
        title=title,
        instance=request.url.path,
        current_status=str(exc.status) if isinstance(exc, InvalidTransition) else None,
        allowed=allowed,
        owner=exc.owner if isinstance(exc, NotOwner) else None,
    )


def lost_database(exc: BaseException) -> bool:
    """The database connection was lost or refused (a restart, an outage): not a bug."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    lost = (sa_exc.OperationalError, sa_exc.InterfaceError, StoreNotOpen, *CONNECTION_LOST)
    return isinstance(exc, lost)


async def _database_handler(request: Request, exc: Exception) -> JSONResponse:
    """A connection found dead: the pool drops it (no ping before each use) and the next
    request takes a fresh one. The request is answered 503; a retry (with the same
    Idempotency-Key) finds what it wrote, if anything."""
    if not lost_database(exc):
        return await _unhandled_handler(request, exc)
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        503,
        "The database could not be reached; retry in a moment (with the same "
        "Idempotency-Key, if the request had one).",
        instance=request.url.path,
        headers={"Retry-After": "1"},
    )


async def _unhandled_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        500,
        "The server failed to answer this request; it has been logged.",
        instance=request.url.path,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(DomainError, _domain_handler)
    app.add_exception_handler(InvalidCursor, _cursor_handler)
    app.add_exception_handler(UnknownQueryParameters, _unknown_query_handler)
    # (StoreNotOpen: the database could not be reached at start and has not come back yet)
    lost_kinds: tuple[type[Exception], ...] = (sa_exc.DBAPIError, StoreNotOpen, *CONNECTION_LOST)
    for lost in lost_kinds:
        app.add_exception_handler(lost, _database_handler)
    app.add_exception_handler(Exception, _unhandled_handler)


def _problem_doc(description: str) -> dict[str, Any]:
    """An error a route answers; `shared.http.openapi` gives it the problem+json schema."""
    return {"description": description}


#: What the audit routes answer while they cannot serve yet: a 503 with `Retry-After`.
AUDIT_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: _problem_doc(
        "Not yet: the audit chain has not caught up with the store, or a rotated signing key "
        "is not installed here yet; retry after `Retry-After` seconds"
    )
}

#: What every route answers to query parameters it does not take (`deps.known_query_only`);
#: the app adds it to each route that documents no 400 of its own.
UNKNOWN_QUERY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem_doc("A query parameter the route does not take: each named, with those it does")
}

#: OpenAPI `responses` shared by the routes, so /docs shows every error a client can meet.
READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _problem_doc("Missing or invalid token"),
    403: _problem_doc("The token's roles may not do this, or only the complaint's owner may"),
    404: _problem_doc("No such complaint (or major incident)"),
    422: _problem_doc("Invalid parameters"),
    429: _problem_doc("Too many requests from this client: retry after `Retry-After` seconds"),
}
COMMAND_RESPONSES: dict[int | str, dict[str, Any]] = {
    **READ_RESPONSES,
    400: _problem_doc("Malformed JSON, a key given twice in one object, or a bad Idempotency-Key"),
    409: _problem_doc("Illegal in the current status, or the same Idempotency-Key is running"),
    412: _problem_doc("If-Match names a version the complaint has moved on from"),
    413: _problem_doc("Body too large"),
    415: _problem_doc("Body is not application/json"),
    422: _problem_doc("Invalid fields, or an Idempotency-Key reused with another body"),
}
