"""Investigation (调查核实) and handling (处理与答复): assignment to the reply."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Response

from services.investigation.schemas import (
    AssignmentRequest,
    ConfirmationRequest,
    EvidenceRequest,
    ExtensionRequest,
    FindingsRequest,
    PauseRequest,
    ReplyRequest,
    ResolutionRequest,
    ResumeRequest,
)
from shared.domain.context import CommandContext
from shared.domain.lifecycle import Command
from shared.http.commands import execute
from shared.http.deps import IfMatchDep, StoreDep, command_context
from shared.http.errors import COMMAND_RESPONSES
from shared.http.fields import NOTIFICATION_ID_PATTERN
from shared.http.routes import COMMAND_ROLES
from shared.http.views import ComplaintView

router = APIRouter(tags=["investigation"], responses=COMMAND_RESPONSES)

SupervisorCtx = Annotated[CommandContext, Depends(command_context(*COMMAND_ROLES[Command.ASSIGN]))]
InvestigatorCtx = Annotated[
    CommandContext, Depends(command_context(*COMMAND_ROLES[Command.RECORD_FINDINGS]))
]
StaffCtx = Annotated[
    CommandContext, Depends(command_context(*COMMAND_ROLES[Command.CONFIRM_NOTIFICATION]))
]
NotificationId = Annotated[str, Path(pattern=NOTIFICATION_ID_PATTERN, examples=["reply-1"])]


@router.post("/complaints/{complaint_id}/assignment", response_model=ComplaintView)
async def assign(
    complaint_id: UUID,
    body: AssignmentRequest,
    ctx: SupervisorCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Hand the complaint to a department and one investigator, who becomes its owner."""
    return await execute(
        store,
        complaint_id,
        lambda c: c.assign(body.department, body.investigator, body.complexity, store.policy, ctx),
        ctx,
        if_match,
        response,
    )


@router.post("/complaints/{complaint_id}/evidence", response_model=ComplaintView)
async def add_evidence(
    complaint_id: UUID,
    body: EvidenceRequest,
    ctx: InvestigatorCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Record one piece of evidence: call or business records, logs, recordings, statements."""
    return await execute(
        store,
        complaint_id,
        lambda c: c.add_evidence(body.kind.value, body.ref, body.summary, ctx),
        ctx,
        if_match,
        response,
    )


@router.post("/complaints/{complaint_id}/extension", response_model=ComplaintView)
async def extend(
    complaint_id: UUID,
    body: ExtensionRequest,
    ctx: InvestigatorCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Extend the investigation limit of a complex complaint; the notice goes to the customer."""
    return await execute(
        store,
        complaint_id,
        lambda c: c.extend(body.reason, body.new_due_at, body.progress_notice, store.policy, ctx),
        ctx,
        if_match,
        response,
    )


@router.post("/complaints/{complaint_id}/findings", response_model=ComplaintView)
async def record_findings(
    complaint_id: UUID,
    body: FindingsRequest,
    ctx: InvestigatorCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Record the conclusion, the rule it rests on, the root cause, and whether it is upheld."""
    return await execute(
        store,
        complaint_id,
        lambda c: c.record_findings(body.conclusion, body.basis, body.root_cause, body.upheld, ctx),
        ctx,
        if_match,
        response,
    )


@router.post("/complaints/{complaint_id}/resolution", response_model=ComplaintView)
async def propose_resolution(
    complaint_id: UUID,
    body: ResolutionRequest,
    ctx: InvestigatorCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Propose the measures and remedies (amounts as exact decimal strings in yuan)."""
    return await execute(
        store,
        complaint_id,
        lambda c: c.propose_resolution(
            body.measures, body.remedy_records(), body.owner, body.due_at, ctx
        ),
        ctx,
        if_match,
        response,
    )


@router.post("/complaints/{complaint_id}/reply", response_model=ComplaintView)
async def reply(
    complaint_id: UUID,
    body: ReplyRequest,
    ctx: InvestigatorCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Answer the customer through their channel; the message leaves through the gateway."""
    return await execute(
        store,
        complaint_id,
        lambda c: c.reply(
            body.channel.value,
            body.conclusion,
            body.basis,
            body.plan,
            body.execution,
            store.policy,
            ctx,
        ),
        ctx,
        if_match,
        response,
    )


@router.post("/complaints/{complaint_id}/pause", response_model=ComplaintView)
async def pause_clock(
    complaint_id: UUID,
    body: PauseRequest,
    ctx: InvestigatorCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Pause the pausable time limits (the policy says which), e.g. waiting for the customer."""
    return await execute(
        store, complaint_id, lambda c: c.pause_clock(body.reason, ctx), ctx, if_match, response
    )


@router.post("/complaints/{complaint_id}/resume", response_model=ComplaintView)
async def resume_clock(
    complaint_id: UUID,
    body: ResumeRequest,
    ctx: InvestigatorCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Resume the paused limits: each due time moves on by the length of the pause."""
    return await execute(
        store, complaint_id, lambda c: c.resume_clock(ctx), ctx, if_match, response
    )


@router.post(
    "/complaints/{complaint_id}/notifications/{notification_id}/confirmation",
    response_model=ComplaintView,
)
async def confirm_notification(
    complaint_id: UUID,
    notification_id: NotificationId,
    body: ConfirmationRequest,
    ctx: StaffCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Record a message to the customer that staff carried out: the letter posted, the call
    made or the visit paid (the customer chose that channel). Until then it is a task, and the
    complaint is listed by `GET /complaints?task=true`."""
    return await execute(
        store,
        complaint_id,
        lambda c: c.confirm_notification(notification_id, body.note, ctx),
        ctx,
        if_match,
        response,
    )
