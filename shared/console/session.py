"""The console's session: the signed-in user's bearer token in a cookie, the language in
another, and the same-origin check every console POST passes (CSRF)."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request, Response

from shared.http.auth import InvalidToken, KeysUnavailable, Principal, token_principal
from shared.settings import Settings

PREFIX = "/console"
#: The bearer token: HttpOnly (no script reads it), SameSite=Strict, only sent to the console.
TOKEN_COOKIE = "console_token"
LANGUAGE_COOKIE = "console_lang"
#: How long a development token minted by the sign-in picker lives (a working day).
DEV_TOKEN_HOURS = 8.0


def root(request: Request) -> str:
    """The prefix a proxy serves the app under, so the pages' links resolve."""
    prefix: str = request.scope.get("root_path", "")
    return prefix.rstrip("/")


def base(request: Request) -> str:
    """The console's own path, as the browser sees it (behind a proxy's prefix too)."""
    return root(request) + PREFIX


def _secure(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return settings.environment != "development"  # plain http only on your own machine


def keep_token(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        path=base(request),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def forget_token(request: Request, response: Response) -> None:
    response.delete_cookie(
        TOKEN_COOKIE, path=base(request), httponly=True, samesite="strict", secure=_secure(request)
    )


def keep_language(request: Request, response: Response, lang: str) -> None:
    response.set_cookie(
        LANGUAGE_COOKIE,
        lang,
        max_age=365 * 24 * 3600,
        path=base(request),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def token_of(request: Request) -> str | None:
    token = request.cookies.get(TOKEN_COOKIE, "").strip()
    return token or None


async def signed_in(request: Request) -> tuple[str, Principal] | None:
    """The session's token and who it names, verified as the API verifies it; None when
    there is no session or its token no longer verifies (expired, revoked key)."""
    token = token_of(request)
    if token is None:
        return None
    try:
        return token, await token_principal(request.scope, token)
    except (InvalidToken, KeysUnavailable):
        return None


def same_origin(request: Request) -> bool:
    """Whether a POST comes from a page of this site: its Origin (or, lacking one, its
    Referer) names this request's own scheme, host and port."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if not sent or sent == "null":
        return False
    parts = urlsplit(sent)
    return (parts.scheme, parts.netloc) == (request.url.scheme, request.url.netloc)


def safe_next(path: str | None, request: Request) -> str:
    """Where to go back to after a switch: a console page of this site, never elsewhere."""
    home = base(request) + "/"
    if not path or not path.startswith(home) or path.startswith("//") or "\\" in path:
        return home
    return path
