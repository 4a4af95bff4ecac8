"""The console's one way to the data: the services' JSON API, called with the signed-in
user's token. Its own process in-process (every service serves the reads); a command another
service serves, by that service's URL (`Settings.console_service_urls`). So authentication,
masking, validation and errors are exactly the API's."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import Request

from shared.domain.codes import Service
from shared.logs import correlation_id
from shared.settings import Settings

#: Longest wait for another service's answer.
TIMEOUT_SECONDS = 15.0
#: How long another service's OpenAPI document (the command forms' source) is kept, and how
#: long one that could not be had is not asked for again (each page would wait for it).
DOCUMENT_SECONDS = 300.0
MISSING_SECONDS = 30.0
#: How long to wait for another service's document: a form can wait, a page should not.
DOCUMENT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
_documents: dict[str, tuple[float, dict[str, Any] | None]] = {}


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def detail(self) -> str:
        """The problem's sentence (RFC 9457 `detail`), for a page to show."""
        if isinstance(self.body, dict):
            return str(self.body.get("detail") or self.body.get("title") or self.status)
        return str(self.status)

    def field_errors(self) -> dict[str, str]:
        """A 422's errors by field (`customer.phone` → its message)."""
        if not isinstance(self.body, dict):
            return {}
        errors = self.body.get("errors") or []
        return {
            str(e.get("field")): str(e.get("message"))
            for e in errors
            if isinstance(e, dict) and e.get("field")
        }


class Stream:
    """A 2xx answer whose body is read as it comes; closed (with its client) once read, or by
    `aclose` when left unread."""

    def __init__(self, response: httpx.Response, client: httpx.AsyncClient) -> None:
        self.response = response
        self._client = client

    @property
    def media_type(self) -> str:
        return str(self.response.headers.get("content-type", "application/octet-stream"))

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_bytes():
                yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self.response.aclose()
        await self._client.aclose()


class Api:
    """The API as one signed-in user calls it."""

    def __init__(self, request: Request, token: str) -> None:
        self.request = request
        self.token = token
        self.settings: Settings = request.app.state.settings
        self.own = Service(request.app.state.service)

    def _client(self, service: Service) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"}
        correlation = correlation_id.get()  # the page's request: its events carry its id
        if correlation:
            headers["X-Request-ID"] = correlation
        if service == self.own:
            transport = httpx.ASGITransport(app=self.request.app)
            base = f"{self.request.url.scheme}://{self.request.url.netloc}"
            return httpx.AsyncClient(transport=transport, base_url=base, headers=headers)
        return httpx.AsyncClient(
            base_url=self.settings.console_service_urls[service],
            headers=headers,
            timeout=TIMEOUT_SECONDS,
        )

    async def get(
        self,
        path: str,
        params: list[tuple[str, str]] | None = None,
        service: Service | None = None,
    ) -> Answer:
        """A read: from this process, or from the service that alone serves it (a 503 if
        that service cannot be reached)."""
        return await self._send(service or self.own, "GET", path, params=urlencode(params or []))

    async def stream(
        self,
        path: str,
        params: list[tuple[str, str]] | None = None,
        service: Service | None = None,
    ) -> Stream | Answer:
        """A read whose body is passed on as it comes (an NDJSON export, a file): its stream
        when it is 2xx, else its problem (or a 503 if its service cannot be reached). The
        caller reads the stream and closes it."""
        service = service or self.own
        client = self._client(service)
        try:
            request = client.build_request("GET", path, params=urlencode(params or []))
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            await client.aclose()
            return _unreachable(service, exc)
        if response.is_success:
            return Stream(response, client)
        try:
            await response.aread()
            return _answer(response)
        except httpx.HTTPError as exc:
            return _unreachable(service, exc)
        finally:
            await response.aclose()
            await client.aclose()

    async def post(
        self, service: Service, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> Answer:
        """A command, to the service that serves it (this process if it is that service)."""
        return await self._send(service, "POST", path, json=body, headers=headers)

    async def delete(self, service: Service, path: str, headers: dict[str, str]) -> Answer:
        """A deletion (a webhook subscription), to the service that serves it."""
        return await self._send(service, "DELETE", path, headers=headers)

    async def _send(self, service: Service, method: str, path: str, **request: Any) -> Answer:
        """One request and its answer; a 503 if the service cannot be reached, a 400 if a
        header a form filled cannot be sent (the pages check theirs)."""
        try:
            async with self._client(service) as client:
                response = await client.request(method, path, **request)
        except httpx.HTTPError as exc:
            return _unreachable(service, exc)
        except UnicodeEncodeError:
            return Answer(400, {"detail": "A header of the request is not plain ASCII."})
        return _answer(response)

    async def document(self, service: Service) -> dict[str, Any] | None:
        """A service's OpenAPI document: this process's own, another's by its URL (kept a
        few minutes); None when that service cannot be reached."""
        if service == self.own:
            own: dict[str, Any] = self.request.app.openapi()
            return own
        url = self.settings.console_service_urls[service]
        kept = _documents.get(url)
        if kept is not None:
            age = time.monotonic() - kept[0]
            if age < (DOCUMENT_SECONDS if kept[1] is not None else MISSING_SECONDS):
                return kept[1]
        try:
            async with httpx.AsyncClient(base_url=url, timeout=DOCUMENT_TIMEOUT) as client:
                response = await client.get("/openapi.json")
            found = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            found = None
        document = found if isinstance(found, dict) else None
        _documents[url] = (time.monotonic(), document)
        return document

    async def request_schema(
        self, service: Service, path: str
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The JSON Schema of a command's body as its service declares it, with the document
        its references resolve in."""
        doc = await self.document(service)
        if doc is None:
            return None
        route = path.replace("{id}", "{complaint_id}")
        try:
            body = doc["paths"][route]["post"]["requestBody"]["content"]["application/json"]
        except KeyError:
            return None
        return body["schema"], doc


def _unreachable(service: Service, exc: httpx.HTTPError) -> Answer:
    why = str(exc) or type(exc).__name__  # a timeout says nothing of itself
    return Answer(503, {"detail": f"The {service.value} service cannot be reached: {why}"})


def _answer(response: httpx.Response) -> Answer:
    if not response.content:  # 204 No Content
        return Answer(response.status_code, None)
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    return Answer(response.status_code, body)
