"""FastAPI dependencies as `Annotated` aliases, shared by every service."""

import re
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from shared.domain.clock import Clock
from shared.domain.codes import Channel, Role
from shared.domain.context import Actor, CommandContext
from shared.http.auth import Principal, authenticate, require_roles
from shared.http.errors import UnknownQueryParameters
from shared.http.fields import IDEMPOTENCY_KEY_PATTERN
from shared.http.fingerprint import STATE_KEY as FINGERPRINT
from shared.http.state import clock_of, settings_of
from shared.settings import Settings
from shared.store.facade import ComplaintStore

#: Where a command's context leaves, for the Idempotency-Key guard, the time and the role its
#: answer is shown at and to (`shared.http.commands.answer_recipe`).
ANSWERED_AS = "answered_as"
#: Where the Idempotency-Key guard leaves a keyed request it found no answer for
#: (`shared.store.idempotency.Unanswered`), for a command that stores its answer with its
#: write; and where that command says it did.
UNANSWERED = "unanswered"
ANSWERED_WITH_WRITE = "answered_with_write"
#: Where a route names the fields of its answer that are shown once and never stored (a
#: webhook's secret): an Idempotency-Key answer is kept with them null.
SHOWN_ONCE = "shown_once"

_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')
#: What If-Match may say: a version as an ETag gives it ("3"), bare (3), or `*`.
IF_MATCH_PATTERN = r'^\s*(\*|(W/)?"?[0-9]{1,18}"?)\s*$'


def _store(request: Request) -> ComplaintStore:
    store: ComplaintStore = request.app.state.store
    return store


def _if_match(
    if_match: Annotated[
        str | None,
        Header(
            pattern=IF_MATCH_PATTERN,
            description='Send the `ETag` of your last read ("3", or bare: 3); 412 if the '
            "complaint has moved on since. `*` matches any version.",
        ),
    ] = None,
) -> int | None:
    """The version If-Match names (None for `*` or none): a value that names no version is
    refused by its pattern (422, like any malformed parameter)."""
    found = _ETAG.match(if_match or "")
    return int(found.group(1)) if found else None


StoreDep = Annotated[ComplaintStore, Depends(_store)]
ClockDep = Annotated[Clock, Depends(clock_of)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]
IfMatchDep = Annotated[int | None, Depends(_if_match)]


def _query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameters a route takes: its own and its dependencies', by their names in
    the URL (aliases included)."""
    names: set[str] = set()
    todo = [dependant]
    while todo:
        current = todo.pop()
        names.update(field.alias for field in current.query_params)
        todo.extend(current.dependencies)
    return frozenset(names)


def known_query_only(request: Request) -> None:
    """Every route's guard (an app-wide dependency): a query parameter the matched route does
    not take is refused with a 400 naming it, not silently ignored (a misspelt filter would
    otherwise answer the whole list). The console's pages are not API routes (they are out of
    the OpenAPI document): like any web page, they ignore what they do not read."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema or not request.query_params:
        return
    # Per app, by route: the app holds its routes, so an id stays theirs.
    known: dict[int, frozenset[str]] | None = getattr(request.app.state, "query_names", None)
    if known is None:
        known = request.app.state.query_names = {}
    declared = known.get(id(route))
    if declared is None:
        declared = known[id(route)] = _query_names(route.dependant)
    unknown = sorted(set(request.query_params.keys()) - declared)
    if unknown:
        raise UnknownQueryParameters(unknown, sorted(declared))


def etag(version: int) -> str:
    return f'"{version}"'


def command_context(
    *roles: Role,
) -> Callable[..., Coroutine[Any, Any, CommandContext]]:
    """A dependency giving the command's context: the acting role, service, channel and time.

    The channel is the frontend's (`X-Channel`), the time the injected clock's, and the
    Idempotency-Key is carried so a retry after a crash is recognised in the events.
    """
    authorize = require_roles(*roles)

    async def dependency(
        request: Request,
        actor: Annotated[Actor, Depends(authorize)],
        x_channel: Annotated[
            Channel | None, Header(description="The frontend channel acting, if any")
        ] = None,
        idempotency_key: Annotated[
            str | None,
            Header(
                pattern=IDEMPOTENCY_KEY_PATTERN,
                description="Retry safely: the same key and body return the first answer "
                "(another body with the same key: 422). 1 to 255 visible ASCII characters.",
            ),
        ] = None,
    ) -> CommandContext:
        now: datetime = request.app.state.clock()
        state = request.scope.setdefault("state", {})
        state[ANSWERED_AS] = {"at": now.isoformat(), "role": actor.role}
        return CommandContext(
            actor=actor,
            service=request.app.state.service,
            at=now,
            channel=x_channel.value if x_channel else None,
            idempotency_key=idempotency_key,
            request_fingerprint=state.get(FINGERPRINT),
        )

    return dependency
