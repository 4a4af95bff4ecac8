"""Callback (回访), archive (归档) and the improvement reports (分析改进)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Annotated, Literal
from uuid import UUID

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response

from services.callback.reports import ImprovementReport, build_report, load_rows, to_csv
from services.callback.schemas import ArchiveRequest, CallbackRequest
from shared.domain.complaint import Complaint
from shared.domain.context import Actor, CommandContext
from shared.domain.lifecycle import Command
from shared.domain.policy import Policy
from shared.http.auth import require_roles
from shared.http.commands import execute
from shared.http.deps import ClockDep, IfMatchDep, SettingsDep, StoreDep, command_context
from shared.http.errors import COMMAND_RESPONSES, READ_RESPONSES, invalid_field
from shared.http.fields import Timestamp
from shared.http.routes import COMMAND_ROLES, REPORT_ROLES
from shared.http.views import ComplaintView

router = APIRouter(tags=["callback"], responses=COMMAND_RESPONSES)

CallbackCtx = Annotated[CommandContext, Depends(command_context(*COMMAND_ROLES[Command.ARCHIVE]))]


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
        c.record_callback(body.satisfaction, body.resolved, body.comments, store.policy, ctx)

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


reports = APIRouter(tags=["reports"], responses=READ_RESPONSES)

Analyst = Annotated[Actor, Depends(require_roles(*REPORT_ROLES))]


def _policies(request: Request) -> dict[str, Policy]:
    policies: dict[str, Policy] = request.app.state.policies
    return policies


PoliciesDep = Annotated[dict[str, Policy], Depends(_policies)]


def _wants_csv(accept: str) -> bool:
    """CSV if the client ranks `text/csv` at least as high as JSON (RFC 9110 `q` values)."""
    quality: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media.lower()] = q
    csv = quality.get("text/csv", 0.0)
    return csv > 0 and csv >= quality.get("application/json", 0.0)


@reports.get(
    "/reports/improvement",
    response_model=ImprovementReport,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "JSON, or CSV (one figure per line) with `?format=csv` or "
            "`Accept: text/csv`",
        }
    },
)
async def improvement_report(
    request: Request,
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
    format: Annotated[
        Literal["json", "csv"] | None,
        Query(description="csv: the same figures as CSV; the default follows `Accept`"),
    ] = None,
) -> ImprovementReport | Response:
    """Complaints accepted in [from, to): counts, on-time rates per limit against target,
    repeat rate, satisfaction, weakest links; `?policy=` re-assesses them under another
    version of the rules, side by side."""
    now = clock()
    end = end or now
    start = start or end - timedelta(days=30)
    if end <= start:
        raise invalid_field("query", "to", "must be after `from`")
    if end - start > timedelta(days=settings.report_max_days):
        raise invalid_field(
            "query", "from", f"a report covers {settings.report_max_days} days at most"
        )
    if policy is not None and policy not in policies:
        raise invalid_field(
            "query", "policy", f"unknown version; known: {', '.join(sorted(policies))}"
        )
    rows = await load_rows(store.engine, start, end)
    under = policies[policy] if policy else None
    # Thousands of complaints take a while to re-assess: off the event loop.
    report = await anyio.to_thread.run_sync(
        partial(build_report, rows, start=start, end=end, now=now, policy=store.policy, under=under)
    )
    if format == "csv" or (format is None and _wants_csv(request.headers.get("accept", ""))):
        name = f"improvement-{start.date().isoformat()}-{end.date().isoformat()}.csv"
        return Response(
            to_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return report
