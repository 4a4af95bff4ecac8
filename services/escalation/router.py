"""Escalation (投诉升级): to a higher level, its review, and regulator appeals (申诉); the
major incidents declared (群体性投诉)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response, status

from services.escalation.incidents import list_incidents, member_states
from services.escalation.schemas import (
    AppealRequest,
    EscalationRequest,
    HandlerRequest,
    IncidentPage,
    IncidentSummary,
    IncidentView,
    ReviewRequest,
)
from shared.domain.codes import Area, Category, Channel, EscalationTrigger, Level
from shared.domain.complaint import Complaint
from shared.domain.context import CommandContext
from shared.domain.lifecycle import Command
from shared.http.commands import answer, execute
from shared.http.deps import ClockDep, IfMatchDep, PrincipalDep, StoreDep, command_context
from shared.http.errors import COMMAND_RESPONSES, READ_RESPONSES
from shared.http.routes import ACCEPT_ROLES, COMMAND_ROLES
from shared.http.views import ComplaintView
from shared.readmodel.cursor import CURSOR_PATTERN

router = APIRouter(tags=["escalation"], responses=COMMAND_RESPONSES)
incidents = APIRouter(tags=["major incidents"], responses=READ_RESPONSES)

EscalateCtx = Annotated[CommandContext, Depends(command_context(*COMMAND_ROLES[Command.ESCALATE]))]
SupervisorCtx = Annotated[CommandContext, Depends(command_context(*COMMAND_ROLES[Command.REVIEW]))]
AppealCtx = Annotated[CommandContext, Depends(command_context(*ACCEPT_ROLES))]


@router.post("/complaints/{complaint_id}/escalation", response_model=ComplaintView)
async def escalate(
    complaint_id: UUID,
    body: EscalationRequest,
    ctx: EscalateCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Escalate to a higher level with everything recorded so far; the level takes ownership."""
    return await execute(
        store,
        complaint_id,
        lambda c: c.escalate(
            EscalationTrigger(body.trigger), body.reason, Level(body.to_level), store.policy, ctx
        ),
        ctx,
        if_match,
        response,
    )


@router.post("/complaints/{complaint_id}/handler", response_model=ComplaintView)
async def assign_handler(
    complaint_id: UUID,
    body: HandlerRequest,
    ctx: SupervisorCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Name the one person who handles an escalated complaint at its level: until then the
    level's supervisors hold it as a group, and that wait is itself a time limit."""
    return await execute(
        store,
        complaint_id,
        lambda c: c.assign_handler(body.handler, ctx),
        ctx,
        if_match,
        response,
    )


@router.post("/complaints/{complaint_id}/review", response_model=ComplaintView)
async def review(
    complaint_id: UUID,
    body: ReviewRequest,
    ctx: SupervisorCtx,
    store: StoreDep,
    if_match: IfMatchDep,
    response: Response,
) -> ComplaintView:
    """Review at the higher level: upheld keeps the handling, revised reopens it here."""
    return await execute(
        store,
        complaint_id,
        lambda c: c.review(body.outcome, body.notes, store.policy, ctx),
        ctx,
        if_match,
        response,
    )


@router.post("/appeals", status_code=status.HTTP_201_CREATED, response_model=ComplaintView)
async def appeal(
    body: AppealRequest, ctx: AppealCtx, store: StoreDep, response: Response
) -> ComplaintView:
    """Take a regulator-forwarded appeal (申诉): it enters at headquarters with the regulator's
    reference and deadline, on the complaint with that acceptance number or on a new one."""
    ctx = replace(ctx, channel=Channel.REGULATOR.value)

    def escalate(c: Complaint) -> None:
        c.escalate(
            EscalationTrigger.REGULATOR_APPEAL,
            body.reason,
            Level.HEADQUARTERS,
            store.policy,
            ctx,
            regulator_ref=body.regulator_ref,
            regulator_due_at=body.due_at,
        )

    if body.complaint is not None:
        intake = {**body.complaint.intake(), "channel": Channel.REGULATOR.value}
        written = await store.accept(intake, ctx, then=escalate)
        response.headers["Location"] = f"/complaints/{written.complaint.id}"
        return answer(written, ctx, response)
    assert body.acceptance_no is not None
    existing = await store.find_by_acceptance_no(body.acceptance_no)
    response.headers["Location"] = f"/complaints/{existing.id}"
    written = await store.execute(existing.id, escalate, ctx=ctx)
    return answer(written, ctx, response)


@incidents.get("/incidents", response_model=IncidentPage)
async def list_major_incidents(
    _: PrincipalDep,
    store: StoreDep,
    clock: ClockDep,
    category: Category | None = None,
    area: Area | None = None,
    is_open: Annotated[
        bool | None,
        Query(alias="open", description="true: still open now (complaints join it); false: closed"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="the `next_cursor` of the page before"),
    ] = None,
) -> IncidentPage:
    """Declared major incidents from the read model, newest first: category, area, window
    and how many complaints each holds and escalated."""
    now = clock()
    rows, next_cursor = await list_incidents(
        store.engine,
        category=category,
        area=area,
        is_open=is_open,
        now=now,
        limit=limit,
        cursor=cursor,
    )
    return IncidentPage(
        items=[IncidentSummary.of(row, now) for row in rows], next_cursor=next_cursor
    )


@incidents.get("/incidents/{incident_id}", response_model=IncidentView)
async def read_major_incident(
    incident_id: UUID, _: PrincipalDep, store: StoreDep, clock: ClockDep
) -> IncidentView:
    """A major incident rebuilt from its events: its window, the threshold and window it was
    declared under, and every complaint linked to it with what was done (escalated from one
    level to the next, or linked and why not) and its status and level now."""
    incident = await store.get_incident(incident_id)
    states = await member_states(store.engine, incident.member_ids)
    return IncidentView.of_incident(incident, states, clock())
