"""Reads every service serves: a complaint rebuilt from its events, as of any time, and its
hash-linked history."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Response

from shared.domain.codes import BusinessType, Category, Level, Status, VipTier
from shared.http.deps import ClockDep, PrincipalDep, SettingsDep, StoreDep, etag
from shared.http.errors import READ_RESPONSES
from shared.http.fields import IDENTIFIER_PATTERN, Timestamp
from shared.http.views import (
    ComplaintPage,
    ComplaintSummary,
    ComplaintView,
    History,
    history_of,
)
from shared.readmodel.cursor import CURSOR_PATTERN
from shared.readmodel.projector import wait_for_position
from shared.readmodel.summaries import ListFilter, list_summaries

router = APIRouter(tags=["reads"], responses=READ_RESPONSES)

#: No control characters (a NUL cannot even be stored in PostgreSQL's text).
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
#: Something besides dashes, and no control characters.
ACCEPTANCE_NO = r"^[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f-][^\x00-\x1f\x7f]*$"
#: A phone or service number as staff may type it: letters and digits (at least one), with
#: spaces, dashes, dots, brackets or a plus between them.
PHONE_QUERY = r"^[ +().-]*[0-9A-Za-z][0-9A-Za-z +().-]*$"


@router.get("/complaints", response_model=ComplaintPage)
async def list_complaints(
    _: PrincipalDep,
    store: StoreDep,
    clock: ClockDep,
    settings: SettingsDep,
    status: Annotated[
        list[Status] | None, Query(description="repeat for any of several statuses")
    ] = None,
    category: Category | None = None,
    business_type: BusinessType | None = None,
    owner: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
    overdue: bool | None = None,
    task: Annotated[
        bool | None,
        Query(
            description="true: only complaints with a letter to post, a call to make or a "
            "visit to pay for the customer, not yet recorded as done"
        ),
    ] = None,
    customer_id: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN)] = None,
    acceptance_no: Annotated[
        str | None,
        Query(max_length=32, pattern=ACCEPTANCE_NO, description="with or without its dashes"),
    ] = None,
    department: Annotated[str | None, Query(max_length=128, pattern=PRINTABLE)] = None,
    investigator: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
    level: Annotated[Level | None, Query(description="the escalation level it is at")] = None,
    vip_tier: VipTier | None = None,
    phone: Annotated[
        str | None,
        Query(
            max_length=40,
            pattern=PHONE_QUERY,
            description="the contact phone or the service number (spaces and dashes ignored)",
        ),
    ] = None,
    due_before: Annotated[
        Timestamp | None,
        Query(description="RFC 3339 time with offset: a limit still running is due before it"),
    ] = None,
    sort: Annotated[
        Literal["newest", "due"],
        Query(description="newest: newest first; due: the next due time, soonest first"),
    ] = "newest",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="the `next_cursor` of the page before"),
    ] = None,
    min_position: Annotated[
        int | None,
        Query(
            ge=0,
            description="Read your own write: wait (a few seconds at most) until the list "
            "includes the event at this position — the `position` a command answered.",
        ),
    ] = None,
) -> ComplaintPage:
    """A page of complaint summaries from the read model, newest first (or by due time)."""
    position = await wait_for_position(
        store.engine, "complaint_summaries", min_position, settings.read_your_writes_seconds
    )
    now = clock()
    filters = ListFilter(
        status=tuple(status or ()),
        category=category,
        business_type=business_type,
        owner=owner,
        overdue=overdue,
        task=task,
        customer_id=customer_id,
        acceptance_no=acceptance_no,
        department=department,
        investigator=investigator,
        level=level,
        vip_tier=vip_tier,
        phone=phone,
        due_before=due_before,
        sort=sort,
    )
    rows, next_cursor = await list_summaries(
        store.engine,
        filters,
        now=now,
        limit=limit,
        cursor=cursor,
        index_secret=settings.index_key.get_secret_value().encode(),
    )
    return ComplaintPage(
        items=[ComplaintSummary.of(row, now) for row in rows],
        next_cursor=next_cursor,
        position=position,
    )


@router.get("/complaints/{complaint_id}", response_model=ComplaintView)
async def read_complaint(
    complaint_id: UUID,
    principal: PrincipalDep,
    store: StoreDep,
    clock: ClockDep,
    response: Response,
    as_of: Annotated[
        Timestamp | None,
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
