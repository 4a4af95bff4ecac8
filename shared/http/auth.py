"""Bearer JWT auth: HS256 tokens with `sub`, `roles` and `exp` (api.md)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.domain.codes import Role
from shared.domain.context import Actor
from shared.settings import Settings

#: Roles that see customers' phone and e-mail unmasked.
UNMASKED_ROLES = frozenset({Role.AGENT, Role.CALLBACK, Role.ADMIN})

MAX_SUB_LENGTH = 200  # the width of idempotency_keys.client
_ROLE_VALUES = frozenset(role.value for role in Role)

_bearer = HTTPBearer(auto_error=False, description="A JWT from `make token ROLE=agent`")


@dataclass(frozen=True)
class Principal:
    sub: str
    roles: tuple[Role, ...]

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


def decode_token(token: str, settings: Settings) -> Principal:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            options={"require": ["sub", "exp"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    raw_roles = claims.get("roles")
    if not isinstance(raw_roles, list) or not raw_roles:
        raise InvalidToken("the token has no roles")
    known = [Role(r) for r in raw_roles if isinstance(r, str) and r in _ROLE_VALUES]
    if not known:
        raise InvalidToken("the token has no known role")
    sub = claims["sub"]
    if not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUB_LENGTH:
        raise InvalidToken(f"the token's sub must be 1 to {MAX_SUB_LENGTH} characters")
    return Principal(sub=sub, roles=tuple(known))


def mint_token(
    settings: Settings, sub: str, roles: list[str], ttl: timedelta, now: datetime
) -> str:
    for role in roles:
        Role(role)  # refuse unknown roles early
    claims = {"sub": sub, "roles": roles, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), settings.jwt_algorithm)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="complaints"'})


async def authenticate(request: Request) -> Principal:
    credentials: HTTPAuthorizationCredentials | None = await _bearer(request)
    if credentials is None:
        raise _unauthorized("Send a bearer token in the Authorization header.")
    try:
        return decode_token(credentials.credentials, request.app.state.settings)
    except InvalidToken as exc:
        raise _unauthorized(f"The token is not valid: {exc}.") from exc


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
