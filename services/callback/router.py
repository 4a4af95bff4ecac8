"""Callback (回访) and archive (归档)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Response

from services.callback.schemas import ArchiveRequest, CallbackRequest
from shared.domain.codes import Role
from shared.domain.complaint import Complaint
from shared.domain.context import CommandContext
from shared.http.commands import execute
from shared.http.deps import IfMatchDep, StoreDep, command_context
from shared.http.errors import COMMAND_RESPONSES
from shared.http.views import ComplaintView

router = APIRouter(tags=["callback"], responses=COMMAND_RESPONSES)

CallbackCtx = Annotated[CommandContext, Depends(command_context(Role.CALLBACK, Role.SUPERVISOR))]


@router.post("/complaints/{complaint_id}/callback", response_model=ComplaintView)
async def callback(
    complaint_id: UUID,
    body: CallbackRequest,
    ctx: CallbackCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Record the callback; dissatisfied or unresolved escalates the complaint at once."""

    def record(c: Complaint) -> None:
        if not body.reached:
            c.record_unreached_callback(body.comments, ctx)
            return
        assert body.satisfaction is not None and body.resolved is not None
        c.record_callback(body.satisfaction, body.resolved, body.comments, ctx)

    return await execute(store, complaint_id, record, ctx, if_match, response)


@router.post("/complaints/{complaint_id}/archive", response_model=ComplaintView)
async def archive(
    complaint_id: UUID,
    body: ArchiveRequest,
    ctx: CallbackCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Archive a complaint whose callback found it solved (or that was refused)."""
    return await execute(
        store, complaint_id, lambda c: c.archive(body.summary, ctx), ctx, if_match, response
    )
