"""How every command route answers: the complaint's new state, its ETag and its position."""

from __future__ import annotations

from fastapi import Response

from shared.domain.context import CommandContext
from shared.http.auth import UNMASKED_ROLES
from shared.http.deps import etag
from shared.http.views import ComplaintView
from shared.store.facade import Written


def answer(written: Written, ctx: CommandContext, response: Response) -> ComplaintView:
    complaint = written.complaint
    response.headers["ETag"] = etag(complaint.version)
    if written.position is not None:
        response.headers["Event-Position"] = str(written.position)
    return ComplaintView.of(
        complaint,
        now=ctx.at,
        unmasked=ctx.actor.role in UNMASKED_ROLES,
        position=written.position,
    )
