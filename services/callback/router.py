"""Callback (回访), archive (归档) and the improvement reports (分析改进)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response

from services.callback.reports import ImprovementReport, build_report, load_rows, to_csv
from services.callback.schemas import ArchiveRequest, CallbackRequest
from shared.domain.codes import Role
from shared.domain.complaint import Complaint
from shared.domain.context import Actor, CommandContext
from shared.domain.policy import Policy
from shared.http.auth import require_roles
from shared.http.commands import execute
from shared.http.deps import ClockDep, IfMatchDep, SettingsDep, StoreDep, command_context
from shared.http.errors import COMMAND_RESPONSES
from shared.http.fields import Timestamp
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


Analyst = Annotated[Actor, Depends(require_roles(Role.ANALYST, Role.SUPERVISOR, Role.REGULATOR))]


def _policies(request: Request) -> dict[str, Policy]:
    policies: dict[str, Policy] = request.app.state.policies
    return policies


PoliciesDep = Annotated[dict[str, Policy], Depends(_policies)]


@router.get(
    "/reports/improvement",
    tags=["reports"],
    response_model=ImprovementReport,
    responses={200: {"content": {"text/csv": {}}, "description": "as JSON, or CSV if asked"}},
)
async def improvement_report(
    _: Analyst,
    store: StoreDep,
    clock: ClockDep,
    settings: SettingsDep,
    policies: PoliciesDep,
    start: Annotated[
        Timestamp | None, Query(alias="from", description="default: 30 days before `to`")
    ] = None,
    end: Annotated[Timestamp | None, Query(alias="to", description="default: now")] = None,
    policy: Annotated[
        str | None,
        Query(max_length=64, description="re-analyse under this policy version as well"),
    ] = None,
    accept: Annotated[str, Header(description="`text/csv` for CSV")] = "application/json",
) -> ImprovementReport | Response:
    """Complaints accepted in [from, to): counts, on-time rates per limit against target,
    repeat rate, satisfaction, weakest links; `?policy=` re-assesses them under another
    version of the rules, side by side."""
    now = clock()
    end = end or now
    start = start or end - timedelta(days=30)
    if end <= start:
        raise HTTPException(422, "`to` must be after `from`.")
    if end - start > timedelta(days=settings.report_max_days):
        raise HTTPException(422, f"A report covers at most {settings.report_max_days} days.")
    if policy is not None and policy not in policies:
        known = ", ".join(sorted(policies))
        raise HTTPException(422, f"Unknown policy version {policy!r}; known: {known}.")
    rows = await load_rows(store.engine, start, end)
    report = build_report(
        rows, start=start, end=end, now=now, under=policies[policy] if policy else None
    )
    if "text/csv" in accept:
        return Response(to_csv(report), media_type="text/csv; charset=utf-8")
    return report
