"""How every command route runs and answers: load, call, save through the store, then the
complaint's new state with its ETag and position."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import HTTPException, Response
from fastapi.responses import JSONResponse

from shared.domain.complaint import Complaint
from shared.domain.context import CommandContext
from shared.http.auth import UNMASKED_ROLES, Principal
from shared.http.deps import etag
from shared.http.views import ComplaintView
from shared.store.facade import ComplaintStore, Written


async def execute(
    store: ComplaintStore,
    complaint_id: UUID,
    command: Callable[[Complaint], None],
    ctx: CommandContext,
    if_match: int | str | None,
    response: Response,
) -> ComplaintView:
    """Run `command` on the complaint (412 if `If-Match` is stale) and answer its new state."""
    if isinstance(if_match, str):
        raise HTTPException(412, f"If-Match {if_match!r} is not a version this API issued.")
    written = await store.execute(complaint_id, command, ctx=ctx, expected_version=if_match)
    return answer(written, ctx, response)


def answer(written: Written, ctx: CommandContext, response: Response) -> ComplaintView:
    complaint = written.complaint
    response.headers["ETag"] = etag(complaint.version)
    # The answer is this complaint's state; stored answers are found by it on erasure.
    response.headers["Content-Location"] = f"/complaints/{complaint.id}"
    if written.position is not None:
        response.headers["Event-Position"] = str(written.position)
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
