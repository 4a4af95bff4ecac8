"""Pure ASGI middleware: rate limits, body limits, media type, Idempotency-Key, metrics, and
the metrics port."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
from http import HTTPStatus
from typing import Any
from uuid import UUID

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.domain.errors import IdempotencyKeyReused
from shared.http.auth import (
    InvalidToken,
    KeysUnavailable,
    Principal,
    token_principal,
    verified_principal,
)
from shared.http.commands import answer_again, answer_recipe
from shared.http.deps import (
    ANSWERED_AS,
    ANSWERED_WITH_WRITE,
    SHOWN_ONCE,
    UNANSWERED,
)
from shared.http.duplicates import duplicate_keys
from shared.http.errors import (
    KEY_REUSED,
    UNKNOWN_QUERY,
    documented_routes,
    problem_response,
    problem_type,
)
from shared.http.fields import IDEMPOTENCY_KEY_PATTERN
from shared.http.fingerprint import STATE_KEY, legacy_request_hash, request_fingerprint
from shared.http.ops import METRICS_PATH
from shared.logs import correlation_id, new_correlation_id
from shared.metrics import Metrics
from shared.store.facade import ComplaintStore
from shared.store.idempotency import (
    Claimed,
    ClaimResult,
    InProgress,
    LookResult,
    Mismatch,
    Replay,
    Unanswered,
)

log = logging.getLogger("complaints.http")
access = logging.getLogger("complaints.access")

_WRITES = frozenset({"POST"})  # the API has no other writes; others get 405 from routing
_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_REPLAYED_HEADERS = ("content-type", "etag", "location", "content-location", "event-position")
#: Answers that wrote nothing and may differ on a retry: the key is released, not stored.
_NOT_STORED = frozenset({401, 403, 408, 409, 429})
#: Commands that store their Idempotency-Key answer with their write (`Unanswered`): the
#: guard only reads what is stored under the key first (an acceptance: its id comes from the
#: key, so racing duplicates collide on it, and a retry finds what its request wrote).
_ANSWERED_WITH_WRITE = frozenset({"/complaints"})
#: Duplicated keys a 400 names at most.
_NAMED = 20
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


async def principal_of(scope: Scope, headers: Headers) -> Principal | None:
    """Who the request's valid bearer token names, if it has one (verified once a request;
    a token that cannot be verified now counts as none here, and the route answers why)."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        return await token_principal(scope, token.strip())
    except (InvalidToken, KeysUnavailable):
        return None


async def client_of(scope: Scope, headers: Headers) -> str | None:
    """The `sub` of the request's valid bearer token, if it has one."""
    principal = await principal_of(scope, headers)
    return principal.sub if principal else None


def route_template(scope: Scope) -> str:
    """The template of the route that answered (`/complaints/{complaint_id}`), also when a
    middleware answered before routing (a replay, a 415, a 429): the documented route the
    request was for; "unmatched" when there is none."""
    template = getattr(scope.get("route"), "path", None)
    if template is None and "app" in scope:
        path, method = scope["path"], scope["method"]
        found = [(t, ms) for regex, ms, t in documented_routes(scope["app"]) if regex.match(path)]
        # the route of this method first, else the first whose path matches
        template = next((t for t, ms in found if method in ms), found[0][0] if found else None)
    return template or "unmatched"


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


#: Paths ops probes call, without a token, and that must answer while clients are throttled.
_UNLIMITED = frozenset({"/health", "/ready", METRICS_PATH})


class MetricsPort:
    """With a port of its own for the metrics (`Settings.metrics_port`): on that port only
    `/metrics` is answered, and on any other `/metrics` is not; the rest is 404, as for a path
    the API does not have. A NetworkPolicy admits by port, not by path: so the monitoring
    system can be let reach the metrics and nothing else, and the API's clients cannot reach
    them. The port is the one the connection came in on (the ASGI scope's `server`, the
    socket's own address: no header can change it)."""

    def __init__(self, app: ASGIApp, *, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server")
            on_metrics_port = server is not None and server[1] == self.port
            if on_metrics_port != (scope["path"] == METRICS_PATH):
                response = problem_response(
                    404, HTTPStatus.NOT_FOUND.phrase, instance=scope["path"]
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


#: How long the shared store (Redis) has to connect or answer before a request passes unchecked.
_STORE_TIMEOUT_SECONDS = 0.25
#: After the shared store failed, requests pass unchecked this long before it is asked again:
#: a Redis that is down or unreachable costs one time-out a second, not one per request.
_STORE_PAUSE_SECONDS = 1.0


class RateLimitStore:
    """Where the limits are counted: in this process (`MemoryStorage`), or, given a Redis URL,
    in a Redis every replica shares (`RedisStorage` through redis-py), so that N replicas
    together allow a client the rate once. One code path: the same limiter on either."""

    def __init__(self, url: str | None, key_prefix: str) -> None:
        self._pool: ConnectionPool | None = None
        self.storage: Storage
        if url is None:
            self.storage = MemoryStorage()
            return
        # Our own pool, to close at shutdown; short time-outs and one immediate retry (a
        # connection Redis dropped), not redis-py's default three retries backing off to 10 s.
        self._pool = ConnectionPool.from_url(
            url.replace("redis+unix://", "unix://", 1),
            socket_connect_timeout=_STORE_TIMEOUT_SECONDS,
            socket_timeout=_STORE_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1),
        )
        self.storage = RedisStorage(
            f"async+{url}",
            implementation="redispy",
            key_prefix=key_prefix,
            wrap_exceptions=True,  # every failure of the store is a StorageError
            connection_pool=self._pool,  # type: ignore[arg-type]  # (limits types options narrowly)
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()


class RateLimit:
    """Per-client request limits: at most `burst` requests in any `window_seconds` (burst/rate,
    see Settings), which is `rate` per second on average with bursts of `burst`. Clients are
    told apart by their token's `sub`; requests without a valid token by address: the peer's,
    or the one a trusted proxy forwards (`Settings.trusted_proxies`, applied before this).
    Beyond the limit: 429 with `Retry-After`. Counted per service in `store`: shared by all
    replicas when it is a Redis, else per process (each replica counts its own share).

    A moving window, in Redis as in memory: "at most `burst` in any `window_seconds`" holds
    exactly (a fixed window would let 2 × burst through around a window's edge), for a list of
    up to `burst` timestamps per client in Redis. If the shared store fails, requests pass
    unlimited (fail open: an outage of Redis must not become an outage of the API); each one
    so passed is counted in `complaints_rate_limit_storage_errors_total`, and the failure and
    the recovery are logged once each."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        burst: int,
        window_seconds: int,
        store: RateLimitStore,
        metrics: Metrics,
        service: str,
    ) -> None:
        self.app = app
        self.service = service
        self.rate_limited = metrics.rate_limited.labels(service)
        self.storage_errors = metrics.rate_limit_storage_errors.labels(service)
        self.window_seconds = window_seconds
        self.item = RateLimitItemPerSecond(burst, window_seconds)
        self.limiter = MovingWindowRateLimiter(store.storage)
        self._paused_until = 0.0  # (monotonic) the store failed: not asked again before then
        self._failing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNLIMITED:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        sub = await client_of(scope, headers)
        who = f"sub:{sub}" if sub else f"addr:{(scope.get('client') or ('?', 0))[0]}"
        if await self._hit(who):
            await self.app(scope, receive, send)
            return
        self.rate_limited.inc()
        try:
            stats = await self.limiter.get_window_stats(self.item, self.service, who)
            wait = max(1, math.ceil(stats.reset_time - time.time()))
        except StorageError:
            wait = self.window_seconds
        response = problem_response(
            429,
            f"Too many requests; retry in {wait} s.",
            slug="rate-limited",
            instance=scope["path"],
            headers={"Retry-After": str(wait)},
        )
        await response(scope, receive, send)

    async def _hit(self, who: str) -> bool:
        """Counts the request; False beyond the limit. True, unchecked, while the store fails."""
        if time.monotonic() < self._paused_until:
            self.storage_errors.inc()
            return True
        try:
            allowed = await self.limiter.hit(self.item, self.service, who)
        except StorageError as exc:
            self.storage_errors.inc()
            self._paused_until = time.monotonic() + _STORE_PAUSE_SECONDS
            if not self._failing:
                self._failing = True
                log.warning(
                    "the rate-limit store failed (%s): requests pass unlimited until it answers",
                    exc.storage_error,
                )
            return True
        if self._failing:
            self._failing = False
            log.info("the rate-limit store answers again: requests are limited again")
        return allowed


class CommandGuard:
    """Guards every write request before it reaches a route.

    Bodies over the limit → 413; bodies that are not JSON by media type → 415; JSON bodies that
    give a key twice in one object → 400 naming it (before any key is claimed). Every request
    with a valid token gets its fingerprint, which its events record. With an Idempotency-Key
    the request is claimed in the database first, under that fingerprint: the same key and
    body return the stored answer and append nothing, another body → 422, the first still
    running → 409. Answers are stored, except those that wrote nothing and may differ next
    time (401, 403, 409, 429, and a 422 for a key another request used: the key is released);
    an answer about a complaint is stored without its body and shown again from the store.
    After a failure on our side the key is abandoned: the next retry takes it over and looks
    for what this attempt wrote. An acceptance is not claimed: the key is only read, and the
    answer stored by the acceptance's own write (`_ANSWERED_WITH_WRITE`, `Unanswered`).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        metrics: Metrics,
        service: str,
        pages_prefix: str | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.replays = metrics.idempotency_replays.labels(service)
        self.conflicts = metrics.idempotency_conflicts.labels(service)
        #: Pages under this prefix (the console) post HTML forms, not commands: only the
        #: body limit applies to them; the commands they send come back through this guard.
        self.pages_prefix = pages_prefix

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
        if self.pages_prefix is not None and path.startswith(self.pages_prefix):
            await self.app(scope, _replayer(body), send)
            return
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if body and not (media_type == "application/json" or media_type.endswith("+json")):
            await self._problem(scope, receive, send, 415, "Send the body as application/json.")
            return
        if repeated := duplicate_keys(body):  # before any key is claimed: nothing is consumed
            shown = repeated[:_NAMED]
            more = f" (and {len(repeated) - _NAMED} more)" if len(repeated) > _NAMED else ""
            await self._problem(
                scope,
                receive,
                send,
                400,
                f"The body gives a key more than once: {', '.join(shown)}{more}. "
                "Give each key once per object.",
                slug="duplicate-keys",
                title="Duplicate JSON keys",
                errors=[
                    {"field": field, "message": "given more than once", "type": "duplicate_key"}
                    for field in shown
                ],
            )
            return

        replay = _replayer(body)
        client = await client_of(scope, headers)
        if client is None:  # no valid token: the route answers 401, nothing to remember
            await self.app(scope, replay, send)
            return
        secret = scope["app"].state.settings.index_key.get_secret_value().encode()
        fingerprint = request_fingerprint(secret, scope["method"], path, client, body)
        scope.setdefault("state", {})[STATE_KEY] = fingerprint  # recorded on its events
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
        store: ComplaintStore = scope["app"].state.store
        legacy_hash = legacy_request_hash(scope["method"], path, body)
        claim: ClaimResult | LookResult
        if path in _ANSWERED_WITH_WRITE:  # a read, no claim: the write stores its answer
            claim = await store.idempotency.look(client, key, fingerprint, legacy_hash=legacy_hash)
        else:
            claim = await store.idempotency.claim(client, key, fingerprint, legacy_hash=legacy_hash)
        if isinstance(claim, Replay):
            self.replays.inc()
            await self._send_replay(scope, send, store, claim)
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
            self.conflicts.inc()
            await self._problem(
                scope, receive, send, 422, str(IdempotencyKeyReused()), slug=KEY_REUSED
            )
        elif isinstance(claim, Unanswered):
            await self._run_unanswered(scope, replay, send, store, claim)
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
        captured = _captured()
        try:
            await self.app(scope, receive, _capture(captured, send))
        except BaseException:
            await store.idempotency.abandon(client, key, claim)
            raise
        if captured["status"] >= 500:
            await store.idempotency.abandon(client, key, claim)
            return
        kept = _to_keep(scope, captured)
        if kept is None:
            await store.idempotency.release(client, key, claim)
            return
        await store.idempotency.complete(client, key, claim, captured["status"], *kept)

    async def _run_unanswered(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        store: ComplaintStore,
        unanswered: Unanswered,
    ) -> None:
        """A command that stores its answer with its write (an acceptance), run without a
        claim: there is nothing to release or abandon. An answer its write did not store (it
        wrote nothing new) is stored after it, as a claimed request's would be."""
        state = scope.setdefault("state", {})
        state[UNANSWERED] = unanswered
        captured = _captured()
        await self.app(scope, receive, _capture(captured, send))
        if state.get(ANSWERED_WITH_WRITE) or captured["status"] >= 500:
            return
        kept = _to_keep(scope, captured)
        if kept is not None:
            await store.idempotency.record(unanswered, captured["status"], *kept)

    def _too_large(self) -> str:
        return f"The body is larger than {self.max_body_bytes} bytes."

    @staticmethod
    async def _send_replay(scope: Scope, send: Send, store: ComplaintStore, replay: Replay) -> None:
        body = replay.body
        if replay.complaint_id is not None and replay.recipe is not None:
            caller = await principal_of(scope, Headers(scope=scope))
            body = await answer_again(store, UUID(replay.complaint_id), replay.recipe, caller)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in replay.headers.items()]
        headers.append((b"idempotent-replayed", b"true"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send(
            {"type": "http.response.start", "status": replay.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})

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
        **extra: Any,
    ) -> None:
        response = problem_response(
            status, detail, instance=scope["path"], headers=headers, slug=slug, **extra
        )
        await response(scope, receive, send)


def _captured() -> dict[str, Any]:
    return {"status": 500, "headers": [], "body": []}


def _capture(captured: dict[str, Any], send: Send) -> Send:
    """`send`, keeping the status, headers and body in `captured` as they pass."""

    async def capture(message: Message) -> None:
        if message["type"] == "http.response.start":
            captured["status"] = message["status"]
            captured["headers"] = message.get("headers", [])
        elif message["type"] == "http.response.body":
            captured["body"].append(message.get("body", b""))
        await send(message)

    return capture


def _to_keep(
    scope: Scope, captured: dict[str, Any]
) -> tuple[dict[str, str], bytes | None, str | None, dict[str, Any] | None] | None:
    """What is stored of an answer: its replayed headers, and its body or, for an answer
    about a complaint, the complaint's id and recipe; None if it is not to be remembered."""
    if captured["status"] in _NOT_STORED or _not_remembered(captured):
        return None
    kept = {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in captured["headers"]
        if k.decode("latin-1").lower() in _REPLAYED_HEADERS
    }
    body: bytes | None = b"".join(captured["body"])
    # An answer about a complaint holds personal data: kept as a recipe, never as sent.
    complaint_id = kept.get("content-location", "").removeprefix("/complaints/") or None
    recipe = None
    if complaint_id is not None:
        recipe = answer_recipe(body or b"", scope["state"].get(ANSWERED_AS))
        if recipe is None:  # cannot be shown again: not remembered
            return None
        body = None
    shown_once = scope["state"].get(SHOWN_ONCE)
    if shown_once and body:  # a secret is answered once, never stored in the clear
        answer = json.loads(body)
        answer.update(dict.fromkeys(shown_once))
        body = json.dumps(answer).encode()
    return kept, body, complaint_id, recipe


#: Problems whose answer is not remembered under the key: the route found the key used by
#: another request whose answer is no longer stored (the key stays that request's); the URL
#: named query parameters its route does not take (the retry without them is this request).
_FORGOTTEN = {422: problem_type(KEY_REUSED), 400: problem_type(UNKNOWN_QUERY)}


def _not_remembered(captured: dict[str, Any]) -> bool:
    if captured["status"] not in _FORGOTTEN:
        return False
    with contextlib.suppress(ValueError, AttributeError):
        found = json.loads(b"".join(captured["body"])).get("type")
        return bool(found == _FORGOTTEN[captured["status"]])
    return False


def _replayer(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class Observe:
    """Per request: a correlation id (the client's `X-Request-ID` if a UUID, else a new one)
    set for the logs and events of the request and echoed on the answer; one access-log line
    (method, route template, status, duration: never a query string, body or personal
    data); request counts and latencies per route template, on the app's metrics (those the
    guard and the limits answered before routing included: `route_template`)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, service: str) -> None:
        self.app = app
        self.service = service
        self.requests = metrics.http_requests
        self.latency = metrics.http_latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        headers = Headers(scope=scope)
        request_id = new_correlation_id(headers.get("x-request-id"))
        token = correlation_id.set(request_id)

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                started_response["yes"] = True
                status["code"] = message["status"]
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"x-request-id", request_id.encode()),
                    ],
                }
            await send(message)

        started_response = {"yes": False}
        try:
            await self.app(scope, receive, observe)
        except Exception:
            # Answered here, not by the outermost error handler, so the 500 and its log line
            # carry the request's correlation id.
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started_response["yes"]:
                raise
            answer = problem_response(
                500, "An unexpected error occurred; it has been logged.", instance=scope["path"]
            )
            await answer(scope, receive, observe)
        finally:
            elapsed = time.perf_counter() - started
            template = route_template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "other"
            verified = verified_principal(scope)  # (as the request's own checks found it)
            client = verified.sub if verified else None
            self.requests.labels(self.service, method, template, str(status["code"])).inc()
            self.latency.labels(self.service, method, template).observe(elapsed)
            access.info(
                "%s %s %s",
                method,
                template,
                status["code"],
                extra={
                    "service": self.service,
                    "method": method,
                    "route": template,
                    "status": status["code"],
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": client,
                },
            )
            correlation_id.reset(token)
