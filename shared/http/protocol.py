"""uvicorn's httptools protocol with the bounds uvicorn lacks: the size and number of a
request's headers, and how long a client may take to send a request's head and body.

uvicorn bounds neither (its issue #157: "timeout unless request headers complete within this
time" was never done); httptools gathers a header's value by copying it again for every piece
that arrives, so a 32 MB header took 25 s of the event loop, and a client trickling a byte now
and then held its connection for ever (each byte restarts the keep-alive timer). Here a head
over the size is refused (431) after little more than the limit has been read, and a client
too slow for its head or body is disconnected (its request, if started, sees a disconnect).
`shared.cli.serve` gives this class to uvicorn as its `http` protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from shared.http.errors import PROBLEM_JSON, problem_type
from shared.settings import Settings

log = logging.getLogger("complaints.http")


@dataclass(frozen=True)
class RequestBounds:
    max_header_bytes: int
    max_header_count: int
    header_timeout: float
    body_timeout: float

    @classmethod
    def of(cls, settings: Settings) -> RequestBounds:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_header_count=settings.max_header_count,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
        )


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One connection. Its deadline runs from the connection's start (or the first byte of a
    later request's head) until the head is complete, then from the start of the request's
    handling until its body is complete; when it passes, the connection is closed."""

    bounds: ClassVar[RequestBounds]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True  # the connection's first head is awaited
        self._head_bytes = 0
        self._ended_in_chunk = False
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.bounds.header_timeout, "head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._ended_in_chunk = False
        super().data_received(data)
        if self._refused or not self._in_head:
            return
        # The head is still unfinished after this chunk: all of it is head, unless a request
        # ended within it (then its start was the end of that request: counted from the next).
        if not self._ended_in_chunk:
            self._head_bytes += len(data)
        if self._head_bytes > self.bounds.max_header_bytes:
            self._refuse()

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        if self._deadline is None:
            self._arm(self.bounds.header_timeout, "head")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        if self._refused:
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.bounds.max_header_bytes or len(self.headers) > self.bounds.max_header_count:
            self._refuse()
            return
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        """The body's time starts when its request is handled (a pipelined request waits
        unread, uvicorn having paused reading, until the one before it is answered)."""
        if cycle.more_body:
            self._arm(self.bounds.body_timeout, "body")
        super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._ended_in_chunk = True
        self._disarm()
        if not self._refused:
            super().on_message_complete()

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow, part)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self, part: str) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("closed a connection whose request %s was not sent in time", part)
            self.transport.close()

    def _refuse(self) -> None:
        """431, and the connection closed: nothing more of it is read."""
        self._refused = True
        self._disarm()
        limit = self.bounds
        body = json.dumps(
            {
                "type": problem_type("431"),
                "title": "Request Header Fields Too Large",
                "status": 431,
                "detail": f"The request's headers are over {limit.max_header_bytes} bytes "
                f"together or more than {limit.max_header_count} fields; send fewer or smaller.",
            }
        ).encode()
        head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
        head += [n + b": " + v + b"\r\n" for n, v in self.server_state.default_headers]
        head += [
            b"content-type: " + PROBLEM_JSON.encode() + b"\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def bounded_protocol(settings: Settings) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http` option, with the bounds of these settings."""

    class Bounded(BoundedHttpToolsProtocol):
        bounds = RequestBounds.of(settings)

    return Bounded
