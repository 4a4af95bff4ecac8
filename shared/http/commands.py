"""How every command route runs and answers: load, call, save through the store, then the
complaint's new state with its ETag and position."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from shared.domain.complaint import Complaint
from shared.domain.context import CommandContext
from shared.http.auth import UNMASKED_ROLES, Principal
from shared.http.deps import ANSWERED_AS, ANSWERED_WITH_WRITE, UNANSWERED, etag
from shared.http.views import ComplaintView
from shared.store.facade import ComplaintStore, Written
from shared.store.idempotency import StoredAnswer, Unanswered


async def execute(
    store: ComplaintStore,
    complaint_id: UUID,
    command: Callable[[Complaint], None],
    ctx: CommandContext,
    if_match: int | None,
    response: Response,
) -> ComplaintView:
    """Run `command` on the complaint (412 if `If-Match` is stale) and answer its new state."""
    written = await store.execute(complaint_id, command, ctx=ctx, expected_version=if_match)
    return answer(written, ctx, response)


async def accept(
    store: ComplaintStore,
    intake: dict[str, Any],
    ctx: CommandContext,
    request: Request,
    response: Response,
) -> ComplaintView:
    """Accept a complaint (201) and answer it. A keyed request the guard found no answer for
    (`Unanswered`) has its answer stored by the acceptance, in the same transaction."""
    state = request.scope.setdefault("state", {})
    unanswered: Unanswered | None = state.get(UNANSWERED)
    answered_as: dict[str, Any] | None = state.get(ANSWERED_AS)
    stored: Callable[[Complaint], StoredAnswer] | None = None
    if unanswered is not None and answered_as is not None:
        shown_as = answered_as

        def stored(complaint: Complaint) -> StoredAnswer:
            # As the guard would keep it (`answer_recipe`); the write adds its position.
            headers = {
                "content-type": "application/json",
                "location": f"/complaints/{complaint.id}",
                **{k.lower(): v for k, v in complaint_headers(complaint, None).items()},
            }
            recipe = {"version": complaint.version, **shown_as}
            return unanswered.answer(201, headers, str(complaint.id), recipe)

    written = await store.accept(intake, ctx, answer=stored)
    if written.answered:
        state[ANSWERED_WITH_WRITE] = True
    response.headers["Location"] = f"/complaints/{written.complaint.id}"
    return answer(written, ctx, response)


def complaint_headers(complaint: Complaint, position: int | None) -> dict[str, str]:
    """The headers of an answer about a complaint: its version, where it is (stored answers
    are found by it on erasure) and the position of the write, if any."""
    headers = {"ETag": etag(complaint.version), "Content-Location": f"/complaints/{complaint.id}"}
    if position is not None:
        headers["Event-Position"] = str(position)
    return headers


def answer(written: Written, ctx: CommandContext, response: Response) -> ComplaintView:
    complaint = written.complaint
    response.headers.update(complaint_headers(complaint, written.position))
    return ComplaintView.of(
        complaint,
        now=ctx.at,
        unmasked=ctx.actor.role in UNMASKED_ROLES,
        position=written.position,
    )


def answer_recipe(body: bytes, answered_as: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a stored Idempotency-Key answer about a complaint keeps instead of its body, which
    holds personal data: the version and position shown, and the time and role it was shown
    at and to (`answered_as`, left by the command's context). None if it cannot be told."""
    if answered_as is None:
        return None
    try:
        shown = json.loads(body)
        return {"version": int(shown["version"]), "position": shown.get("position"), **answered_as}
    except (ValueError, TypeError, KeyError):
        return None


async def answer_again(
    store: ComplaintStore, complaint_id: UUID, recipe: dict[str, Any], caller: Principal | None
) -> bytes:
    """A stored answer about a complaint, shown again from the store: the complaint at the
    version first shown, as of the time it was shown, so the same as then, except that erased
    personal data reads as erased. Unmasked only if the role it was shown to sees personal
    data and the caller's token still carries that role (a recipe without a role: if the
    caller's token has one that sees it)."""
    [complaint] = await store.load_versions({complaint_id: int(recipe["version"])})
    role = recipe.get("role")
    roles = caller.roles if caller else ()
    if role is None:
        unmasked = any(r in UNMASKED_ROLES for r in roles)
    else:
        unmasked = role in UNMASKED_ROLES and role in roles
    view = ComplaintView.of(
        complaint,
        now=datetime.fromisoformat(recipe["at"]),
        unmasked=unmasked,
        position=recipe.get("position"),
    )
    return bytes(JSONResponse(view.model_dump(mode="json")).body)
