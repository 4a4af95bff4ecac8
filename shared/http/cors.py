"""CORS: which other origins' browser pages may call the API, with what, and read what.

Off unless COMPLAINTS_CORS_ORIGINS names origins. No credentials are allowed: clients send
a bearer token in `Authorization`, never a cookie, so a page on an allowed origin gets no
authority it did not already hold.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from shared.http.errors import problem_response

#: The methods the API answers (HEAD with GET).
METHODS = ("GET", "HEAD", "POST", "DELETE")
#: The request headers clients send besides the CORS-safelisted ones (Accept, Content-Type…):
#: the token (auth.py), Idempotency-Key (middleware.py, deps.py), If-Match and X-Channel
#: (deps.py), X-Request-ID (middleware.py, Observe).
REQUEST_HEADERS = ("Authorization", "Idempotency-Key", "If-Match", "X-Channel", "X-Request-ID")
#: The response headers a page may read besides the safelisted ones (Content-Type…): what
#: answers set (commands.py, reads.py, middleware.py, errors.py, auth.py, the report's CSV).
EXPOSED_HEADERS = (
    "ETag",
    "Location",
    "Content-Location",
    "Event-Position",
    "Idempotent-Replayed",
    "Retry-After",
    "X-Request-ID",
    "WWW-Authenticate",
    "Allow",
    "Content-Disposition",
)
#: How long a browser may keep a preflight's answer, in seconds.
PREFLIGHT_MAX_AGE = 600


class Cors(CORSMiddleware):
    """Starlette's CORS middleware with this API's methods and headers; a preflight it refuses
    is answered with a problem document saying what is allowed."""

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=METHODS,
            allow_headers=REQUEST_HEADERS,
            allow_credentials=False,
            expose_headers=EXPOSED_HEADERS,
            max_age=PREFLIGHT_MAX_AGE,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in {"content-type", "content-length"}
        }
        return problem_response(
            400,
            f"Cross-origin request refused ({refused} not allowed). Allowed methods: "
            f"{', '.join(METHODS)}; allowed request headers: {', '.join(REQUEST_HEADERS)} and "
            "the CORS-safelisted ones; allowed origins: those in COMPLAINTS_CORS_ORIGINS.",
            slug="cors-refused",
            headers=headers,
        )
