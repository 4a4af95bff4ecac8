"""Bearer JWT auth (docs/api.md): the service's own HS256 tokens, and the operator's identity
provider's (RS256/ES256, keys from its JWKS), each with `sub`, roles and `exp` (and, optionally,
the staff member's department)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import jwt
from anyio import to_thread
from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt import PyJWK, PyJWKClient, PyJWKClientConnectionError, PyJWKClientError, PyJWKSet
from starlette.types import Scope

from shared.domain.codes import Role
from shared.domain.context import Actor
from shared.settings import Settings

#: Roles that see customers' phone and e-mail unmasked.
UNMASKED_ROLES = frozenset({Role.AGENT, Role.CALLBACK, Role.ADMIN})

MAX_SUB_LENGTH = 200  # the width of idempotency_keys.client
MAX_DEPARTMENT_LENGTH = 128  # as the list's `department` filter takes it
_ROLE_VALUES = frozenset(role.value for role in Role)

#: Where a request's token verdict is kept: (token, Principal or the error).
_VERDICT = "complaints.principal"
log = logging.getLogger("complaints.auth")

_bearer = HTTPBearer(auto_error=False, description="A JWT from `make token ROLE=agent`")


@dataclass(frozen=True)
class Principal:
    sub: str
    roles: tuple[Role, ...]
    #: The staff member's department (the token's optional department claim), for the
    #: console's "my department" queue; it grants nothing.
    department: str | None = None

    def acting_as(self, allowed: frozenset[Role]) -> Actor | None:
        """The first of the token's roles that may act (admin may do everything)."""
        for role in self.roles:
            if role in allowed or role == Role.ADMIN:
                return Actor(id=self.sub, role=role.value)
        return None

    @property
    def sees_personal_data(self) -> bool:
        return any(role in UNMASKED_ROLES for role in self.roles)


class InvalidToken(Exception):
    pass


class KeysUnavailable(Exception):
    """The identity provider's keys could not be had (unreachable, too slow, or not a key
    set): the token may well be valid, so the request is answered 503, not 401."""


#: Leeway on `exp`, `nbf` and `iat` of the identity provider's tokens: its clock is another
#: machine's (the service's own tokens get none).
PROVIDER_CLOCK_SKEW_SECONDS = 30


class TokenVerifier:
    """Verifies bearer tokens, of two kinds: the operator's identity provider's (asymmetric,
    keys from `jwks_url`) and the service's own HS256 ones (`jwt_secret`).

    What verifies a token is decided by where it comes from, never by its `alg` alone: a
    token whose header names a `kid`, where a JWKS is configured, only by the JWKS key of that
    `kid` with one of `jwks_algorithms` (the key's own algorithm); any other only by the HS256
    secret. So `alg: none`, or an HS256 token "signed" with a published public key, meets
    nothing that verifies it. `iss` and `aud` are checked, where configured, on both kinds.

    The keys are fetched in a thread, one fetch at a time, within `jwks_timeout_seconds`, and
    kept `jwks_cache_seconds`; while they are fresh, a token is verified without leaving the
    event loop. A `kid` the keys lack fetches them again at most every `jwks_refetch_seconds`.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secret = settings.hs256_secret()
        self.jwks = (
            # No per-kid cache (`cache_keys`): it never expires, so a key the provider
            # withdrew would verify tokens until a restart; the key set's cache does.
            PyJWKClient(
                settings.jwks_url,
                cache_jwk_set=True,
                lifespan=settings.jwks_cache_seconds,
                timeout=settings.jwks_timeout_seconds,
                cooldown_duration=settings.jwks_refetch_seconds,
            )
            if settings.jwks_url
            else None
        )
        self._fetching = anyio.Lock()

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        kid = header.get("kid")
        if self.jwks is not None and kid is not None:
            if not isinstance(kid, str):
                raise InvalidToken("the token's kid must be a string")
            allowed = self.settings.jwks_algorithms
            if header.get("alg") not in allowed:  # refused before any fetch
                raise InvalidToken(f"a token with a kid must be signed with {', '.join(allowed)}")
            key = await self._key(self.jwks, kid)
            claims = self._claims(
                token, key, self.settings.jwks_algorithms, PROVIDER_CLOCK_SKEW_SECONDS
            )
        elif self.secret is not None:
            claims = self._claims(token, self.secret, [self.settings.jwt_algorithm], 0)
        else:
            raise InvalidToken("only the identity provider's tokens (with a kid) are accepted")
        return principal_of_claims(
            claims, self.settings.jwt_roles_claim, self.settings.jwt_department_claim
        )

    def _claims(
        self, token: str, key: PyJWK | str, algorithms: Sequence[str], leeway: int
    ) -> dict[str, Any]:
        settings = self.settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                leeway=leeway,
                options={
                    "require": ["sub", "exp"],
                    "verify_aud": settings.jwt_audience is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        return claims

    async def _key(self, jwks: PyJWKClient, kid: str) -> PyJWK:
        key = _fresh_key(jwks, kid)
        if key is not None:
            return key
        async with self._fetching:  # one fetch at a time: the others then find its keys
            return _fresh_key(jwks, kid) or await self._fetch_key(jwks, kid)

    async def _fetch_key(self, jwks: PyJWKClient, kid: str) -> PyJWK:
        timeout = self.settings.jwks_timeout_seconds
        try:
            with anyio.fail_after(timeout):
                key: PyJWK = await to_thread.run_sync(
                    jwks.get_signing_key, kid, abandon_on_cancel=True
                )
                return key
        except TimeoutError as exc:
            log.warning("the identity provider's keys did not come within %s s", timeout)
            raise KeysUnavailable(
                f"the identity provider's keys did not come within {timeout} s"
            ) from exc
        except PyJWKClientConnectionError as exc:
            log.warning("the identity provider's keys could not be fetched: %s", exc)
            raise KeysUnavailable("the identity provider's keys could not be fetched") from exc
        except (jwt.PyJWTError, ValueError) as exc:
            if isinstance(exc, PyJWKClientError) and _fresh_keys(jwks) is not None:
                # the keys came and are fresh: none of them has this kid
                raise InvalidToken(f"no key of the identity provider has kid {kid!r}") from exc
            log.warning("the identity provider's keys are not a usable key set: %s", exc)
            raise KeysUnavailable("the identity provider's keys are not a usable key set") from exc


def _fresh_key(jwks: PyJWKClient, kid: str) -> PyJWK | None:
    """The signing key of this kid among the cached keys, if they are fresh (no I/O); the
    same choice as `PyJWKClient.get_signing_key`'s (`use` is `sig` or absent)."""
    keys = _fresh_keys(jwks)
    if keys is None:
        return None
    return next((k for k in keys if k.key_id == kid and k.public_key_use in ("sig", None)), None)


def _fresh_keys(jwks: PyJWKClient) -> PyJWKSet | None:
    return jwks.jwk_set_cache.get() if jwks.jwk_set_cache is not None else None


def roles_claim(claims: dict[str, Any], path: str) -> Any:
    """The claim at a dotted path (`realm_access.roles`), or None."""
    value: Any = claims
    for name in path.split("."):
        value = value.get(name) if isinstance(value, dict) else None
    return value


def principal_of_claims(
    claims: dict[str, Any], roles_path: str = "roles", department_path: str = "department"
) -> Principal:
    raw_roles = roles_claim(claims, roles_path)
    if not isinstance(raw_roles, list) or not raw_roles:
        raise InvalidToken(f"the token has no roles (claim {roles_path})")
    known = [Role(r) for r in raw_roles if isinstance(r, str) and r in _ROLE_VALUES]
    if not known:
        raise InvalidToken("the token has no known role")
    sub = claims["sub"]
    if not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUB_LENGTH:
        raise InvalidToken(f"the token's sub must be 1 to {MAX_SUB_LENGTH} characters")
    return Principal(sub=sub, roles=tuple(known), department=department_of(claims, department_path))


def department_of(claims: dict[str, Any], path: str) -> str | None:
    """The token's department: a printable string of at most MAX_DEPARTMENT_LENGTH
    characters; anything else (absent, a list, too long) is no department, since it only
    chooses a queue and grants nothing."""
    value = roles_claim(claims, path)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not 0 < len(value) <= MAX_DEPARTMENT_LENGTH or not value.isprintable():
        return None
    return value


async def token_principal(scope: Scope, token: str) -> Principal:
    """Who a request's bearer token names, verified once a request: the verdict (the
    principal, or why not) is kept in the scope for every later caller with the same token."""
    kept: tuple[str, Principal | InvalidToken | KeysUnavailable] | None = scope.get(_VERDICT)
    verdict: Principal | InvalidToken | KeysUnavailable
    if kept is not None and kept[0] == token:
        verdict = kept[1]
    else:
        verifier: TokenVerifier = scope["app"].state.verifier
        try:
            verdict = await verifier.verify(token)
        except (InvalidToken, KeysUnavailable) as exc:
            verdict = exc
        scope[_VERDICT] = (token, verdict)
    if isinstance(verdict, Exception):
        raise verdict
    return verdict


def verified_principal(scope: Scope) -> Principal | None:
    """Who the request's token was verified as earlier in this request, if it was: never
    verifies (the access log must not make an unlimited route fetch keys)."""
    kept: tuple[str, Principal | InvalidToken | KeysUnavailable] | None = scope.get(_VERDICT)
    return kept[1] if kept is not None and isinstance(kept[1], Principal) else None


def mint_token(
    settings: Settings,
    sub: str,
    roles: list[str],
    ttl: timedelta,
    now: datetime,
    department: str | None = None,
) -> str:
    """One of the service's own HS256 tokens: its roles in `jwt_roles_claim` (its department,
    if given, in `jwt_department_claim`), with `iss` and `aud` where configured."""
    secret = settings.hs256_secret()
    if secret is None:
        raise ValueError(
            "HS256 tokens are off here (production without COMPLAINTS_JWT_SECRET): "
            "take a token from the identity provider"
        )
    for role in roles:
        Role(role)  # refuse unknown roles early
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + ttl}
    _place(claims, settings.jwt_roles_claim, roles)  # where the provider's tokens have them
    if department:
        _place(claims, settings.jwt_department_claim, department)
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, secret, settings.jwt_algorithm)


def _place(claims: dict[str, Any], path: str, value: Any) -> None:
    """Put a claim at a dotted path (`realm_access.roles`)."""
    *outer, innermost = path.split(".")
    nested = claims
    for name in outer:
        nested = nested.setdefault(name, {})
    nested[innermost] = value


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="complaints"'})


async def authenticate(request: Request) -> Principal:
    credentials: HTTPAuthorizationCredentials | None = await _bearer(request)
    if credentials is None:
        raise _unauthorized("Send a bearer token in the Authorization header.")
    try:
        return await token_principal(request.scope, credentials.credentials)
    except InvalidToken as exc:
        raise _unauthorized(f"The token is not valid: {exc}.") from exc
    except KeysUnavailable as exc:
        raise HTTPException(
            503,
            f"The token cannot be verified now ({exc}); retry in a moment.",
            headers={"Retry-After": "5"},
        ) from exc


def require_roles(*roles: Role) -> Callable[[Request], Coroutine[Any, Any, Actor]]:
    """A dependency that authenticates and returns the actor, or answers 401/403."""
    allowed = frozenset(roles)

    async def dependency(request: Request) -> Actor:
        principal = await authenticate(request)
        actor = principal.acting_as(allowed)
        if actor is None:
            needed = ", ".join(sorted(r.value for r in allowed | {Role.ADMIN}))
            raise HTTPException(403, f"This needs one of the roles: {needed}.")
        return actor

    return dependency
