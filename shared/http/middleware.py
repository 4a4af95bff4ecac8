"""Pure ASGI middleware: body limits, media type, Idempotency-Key, and Prometheus metrics."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http.auth import InvalidToken, decode_token
from shared.http.errors import problem_response
from shared.store.facade import ComplaintStore
from shared.store.idempotency import Claimed, InProgress, Mismatch, Replay

log = logging.getLogger("complaints.http")

_WRITES = frozenset({"POST", "PUT", "PATCH"})
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_REPLAYED_HEADERS = ("content-type", "etag", "location", "event-position")
#: Answers that wrote nothing and may differ on a retry: the key is released, not stored.
_NOT_STORED = frozenset({401, 403, 408, 409, 429})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _canonical(body: bytes) -> bytes:
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        return body


class CommandGuard:
    """Guards every write request before it reaches a route.

    Bodies over the limit → 413; bodies that are not JSON by media type → 415. With an
    Idempotency-Key the request is claimed in the database first: the same key and body
    return the stored answer and append nothing, another body → 422, the first still running
    → 409. Answers are stored, except those that wrote nothing and may differ next time
    (401, 403, 409, 429: the key is released). After a failure on our side the key is
    abandoned: the next retry takes it over and looks for what this attempt wrote.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITES:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = scope["path"]
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._problem(scope, receive, send, 413, self._too_large())
            return
        try:
            body = await _read_body(receive, self.max_body_bytes)
        except BodyTooLarge:
            await self._problem(scope, receive, send, 413, self._too_large())
            return
        except ConnectionAbortedError:
            return
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if body and not (media_type == "application/json" or media_type.endswith("+json")):
            await self._problem(scope, receive, send, 415, "Send the body as application/json.")
            return

        replay = _replayer(body)
        key = headers.get("idempotency-key")
        if key is None:
            await self.app(scope, replay, send)
            return
        if not _KEY.match(key):
            await self._problem(
                scope,
                receive,
                send,
                400,
                "Idempotency-Key must be 1 to 255 visible ASCII characters.",
            )
            return
        client = self._client(scope, headers)
        if client is None:  # no valid token: the route answers 401, nothing to remember
            await self.app(scope, replay, send)
            return
        store: ComplaintStore = scope["app"].state.store
        request_hash = hashlib.sha256(
            scope["method"].encode() + b" " + path.encode() + b"\n" + _canonical(body)
        ).hexdigest()
        claim = await store.idempotency.claim(client, key, request_hash)
        if isinstance(claim, Replay):
            await self._send_replay(send, claim)
        elif isinstance(claim, InProgress):
            await self._problem(
                scope,
                receive,
                send,
                409,
                "A request with this Idempotency-Key is still being processed; retry shortly.",
                headers={"Retry-After": "1"},
                slug="idempotency-in-progress",
            )
        elif isinstance(claim, Mismatch):
            await self._problem(
                scope,
                receive,
                send,
                422,
                "This Idempotency-Key was used with a different request.",
                slug="idempotency-key-reused",
            )
        else:
            await self._run_claimed(scope, replay, send, store, client, key, claim)

    async def _run_claimed(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        store: ComplaintStore,
        client: str,
        key: str,
        claim: Claimed,
    ) -> None:
        scope.setdefault("state", {})["idempotency_recovering"] = claim.recovering
        captured: dict[str, Any] = {"status": 500, "headers": [], "body": []}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message.get("headers", [])
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await store.idempotency.abandon(client, key, claim)
            raise
        if captured["status"] >= 500:
            await store.idempotency.abandon(client, key, claim)
            return
        if captured["status"] in _NOT_STORED:
            await store.idempotency.release(client, key, claim)
            return
        kept = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in captured["headers"]
            if k.decode("latin-1").lower() in _REPLAYED_HEADERS
        }
        await store.idempotency.complete(
            client, key, claim, captured["status"], kept, b"".join(captured["body"])
        )

    @staticmethod
    def _client(scope: Scope, headers: Headers) -> str | None:
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return decode_token(token.strip(), scope["app"].state.settings).sub
        except InvalidToken:
            return None

    def _too_large(self) -> str:
        return f"The body is larger than {self.max_body_bytes} bytes."

    @staticmethod
    async def _send_replay(send: Send, replay: Replay) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in replay.headers.items()]
        headers.append((b"idempotent-replayed", b"true"))
        headers.append((b"content-length", str(len(replay.body)).encode()))
        await send(
            {"type": "http.response.start", "status": replay.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": replay.body})

    @staticmethod
    async def _problem(
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        slug: str | None = None,
    ) -> None:
        response = problem_response(
            status, detail, instance=scope["path"], headers=headers, slug=slug
        )
        await response(scope, receive, send)


def _replayer(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class Metrics:
    """Request counts and latencies per route template, on a registry of the app's own."""

    def __init__(self, app: ASGIApp, *, registry: CollectorRegistry, service: str) -> None:
        self.app = app
        self.service = service
        self.requests = Counter(
            "complaints_http_requests",
            "HTTP requests answered",
            ["service", "method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "complaints_http_request_seconds",
            "Time to answer an HTTP request",
            ["service", "method", "route"],
            registry=registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.requests.labels(self.service, method, template, str(status["code"])).inc()
            self.latency.labels(self.service, method, template).observe(
                time.perf_counter() - started
            )
