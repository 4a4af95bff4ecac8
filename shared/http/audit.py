"""What a regulator reads: the audit export and the signed checkpoints of its chain."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from shared.audit.checkpoints import Checkpoints
from shared.audit.export import export_lines, first_chained_at
from shared.domain.codes import Role
from shared.domain.context import Actor
from shared.http.auth import require_roles
from shared.http.deps import ClockDep, SettingsDep, StoreDep
from shared.http.errors import READ_RESPONSES, invalid_field
from shared.http.fields import Timestamp

router = APIRouter(tags=["audit"], responses=READ_RESPONSES)

Auditor = Annotated[Actor, Depends(require_roles(Role.REGULATOR, Role.ANALYST))]
Signer = Annotated[Actor, Depends(require_roles(Role.ANALYST))]


def _checkpoints(request: Request) -> Checkpoints:
    checkpoints: Checkpoints = request.app.state.checkpoints
    return checkpoints


CheckpointsDep = Annotated[Checkpoints, Depends(_checkpoints)]


@router.get(
    "/audit/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {}},
            "description": "one event per line, then a trailer line",
        }
    },
)
async def audit_export(
    _: Auditor,
    store: StoreDep,
    checkpoints: CheckpointsDep,
    clock: ClockDep,
    settings: SettingsDep,
    start: Annotated[Timestamp | None, Query(alias="from")] = None,
    end: Annotated[Timestamp | None, Query(alias="to")] = None,
) -> StreamingResponse:
    """Every event of [from, to) in global order, with the hash chain; check it with
    `shared/audit/verify.py` and the checkpoints. `from` defaults to the first event, `to` to
    now; one export covers at most `COMPLAINTS_AUDIT_EXPORT_MAX_DAYS` (366) days."""
    if start is not None and end is not None and end <= start:
        raise invalid_field("query", "to", "must be after `from`")
    now = clock()
    max_days = settings.audit_export_max_days
    first = start or await first_chained_at(store.engine)
    if first is not None and (end or now) - first > timedelta(days=max_days):
        raise invalid_field(
            "query",
            "from",
            f"one export covers at most {max_days} days: export period by period (each "
            "export's first prev_hash is the last hash of the one before)",
        )
    return StreamingResponse(
        export_lines(store, store.engine, checkpoints.key, start=start, end=end, now=now),
        media_type="application/x-ndjson",
    )


@router.get("/audit/checkpoints")
async def audit_checkpoints(_: Auditor, checkpoints: CheckpointsDep) -> dict[str, Any]:
    """Signed chain heads (position, hash, signed_at, signature) and the Ed25519 public key."""
    return await checkpoints.listing()


@router.post("/audit/checkpoints", status_code=201)
async def sign_checkpoint(
    _: Signer, checkpoints: CheckpointsDep, clock: ClockDep
) -> dict[str, Any]:
    """Sign the current chain head now (it is also signed periodically)."""
    signed = await checkpoints.sign_head(clock())
    if signed is None:
        raise HTTPException(409, "Nothing has been chained yet.")
    return signed
