"""Intake (投诉受理): accept a complaint, or refuse it (不予受理)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Request, Response, status

from services.intake.schemas import AcceptRequest, RefusalRequest
from shared.domain.context import CommandContext
from shared.http.commands import accept, execute
from shared.http.deps import IfMatchDep, StoreDep, command_context
from shared.http.errors import COMMAND_RESPONSES
from shared.http.fields import IDENTIFIER_PATTERN
from shared.http.routes import ACCEPT_ROLES, ADMIN_ROLES
from shared.http.views import ComplaintView, ErasureView

router = APIRouter(tags=["intake"], responses=COMMAND_RESPONSES)

#: Who accepts and refuses (docs/api.md "Who may do what"); the console asks the same set.
IntakeCtx = Annotated[CommandContext, Depends(command_context(*ACCEPT_ROLES))]
AdminCtx = Annotated[CommandContext, Depends(command_context(*ADMIN_ROLES))]
CustomerId = Annotated[str, Path(pattern=IDENTIFIER_PATTERN, examples=["cust-000123"])]


@router.post("/complaints", status_code=status.HTTP_201_CREATED, response_model=ComplaintView)
async def accept_complaint(
    body: AcceptRequest, ctx: IntakeCtx, store: StoreDep, request: Request, response: Response
) -> ComplaintView:
    """Accept a complaint: answers with its acceptance number, deadlines and next steps."""
    return await accept(
        store, body.intake(), replace(ctx, channel=body.channel.value), request, response
    )


@router.post("/complaints/{complaint_id}/refusal", response_model=ComplaintView)
async def refuse_complaint(
    complaint_id: UUID,
    body: RefusalRequest,
    ctx: IntakeCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Do not accept (不予受理): record the reason and where else the customer can go; the
    customer is told both. A reason must hold (422 otherwise): time_barred only when intake
    flagged the complaint (or a supervisor overrides), repeat_with_conclusion only for a repeat
    of a complaint that was replied or archived."""
    earlier = await store.earlier_of(complaint_id)
    return await execute(
        store,
        complaint_id,
        lambda c: c.refuse(
            body.reason,
            body.explanation,
            body.redirect,
            ctx,
            earlier=earlier,
            override=body.override_reason,
        ),
        ctx,
        if_match,
        response,
    )


@router.post("/customers/{customer_id}/erasure", response_model=ErasureView)
async def erase_customer(customer_id: CustomerId, ctx: AdminCtx, store: StoreDep) -> ErasureView:
    """Erase the customer's personal data everywhere (admin only): their key is destroyed, so
    name, phone, e-mail, service number and their free text read as "[erased]" in every
    complaint, at every point of its history, in exports and in snapshots. Codes, times and
    staff's handling stay; the audit chain and its checkpoints still verify. Each of the
    customer's complaints records a `PersonalDataErased` event. Repeating it is harmless
    (`keys_destroyed: 0`). An id of no customer we hold anything of (no complaint, no key) is
    404, and nothing is recorded or destroyed."""
    erasure = await store.erase_customer(customer_id, ctx)
    return ErasureView(
        customer_id=erasure.customer_id,
        erased_at=ctx.at,
        keys_destroyed=erasure.keys_destroyed,
        complaints=erasure.complaints,
    )
