"""How every command route runs and answers: load, call, save through the store, then the
complaint's new state with its ETag and position."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from fastapi import HTTPException, Response

from shared.domain.complaint import Complaint
from shared.domain.context import CommandContext
from shared.http.auth import UNMASKED_ROLES
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
