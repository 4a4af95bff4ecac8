"""Reads every service serves: a complaint rebuilt from its events, as of any time, and its
hash-linked history."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime

from shared.http.deps import ClockDep, PrincipalDep, StoreDep, etag
from shared.http.errors import READ_RESPONSES
from shared.http.views import ComplaintView, History, history_of

router = APIRouter(tags=["reads"], responses=READ_RESPONSES)


@router.get("/complaints/{complaint_id}", response_model=ComplaintView)
async def read_complaint(
    complaint_id: UUID,
    principal: PrincipalDep,
    store: StoreDep,
    clock: ClockDep,
    response: Response,
    as_of: Annotated[
        AwareDatetime | None,
        Query(description="RFC 3339 time with offset: the complaint exactly as it stood then"),
    ] = None,
) -> ComplaintView:
    """The complaint rebuilt from its events, with deadlines as running, met or missed."""
    complaint = await store.get(complaint_id, as_of=as_of)
    response.headers["ETag"] = etag(complaint.version)
    return ComplaintView.of(
        complaint,
        now=as_of or clock(),
        unmasked=principal.sees_personal_data,
        as_of=as_of,
    )


@router.get("/complaints/{complaint_id}/history", response_model=History)
async def read_history(complaint_id: UUID, principal: PrincipalDep, store: StoreDep) -> History:
    """Every event in order, who did it, when, and the hash link to the event before."""
    events = await store.history(complaint_id)
    return history_of(complaint_id, events, unmasked=principal.sees_personal_data)
