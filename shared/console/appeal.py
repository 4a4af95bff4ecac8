"""A regulator's appeal (申诉) taken down in the console: the regulator's reference, its
deadline and reason, about a complaint we have (its acceptance number) or one we never had
(the acceptance fields). The form is the escalation service's POST /appeals body as its
OpenAPI document declares it; the API decides who may send it and whether it is valid."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from shared.console import commands, session
from shared.console.client import Api
from shared.console.commands import Field
from shared.console.pages import Sender, Signed, Viewer, idempotency_key, local_times, read_form
from shared.domain.codes import Channel
from shared.domain.lifecycle import Command
from shared.http.routes import ACCEPT_ROLES, APPEAL

router = APIRouter(prefix=session.PREFIX, include_in_schema=False)

SERVICE, PATH = APPEAL
#: The two kinds of appeal the form offers, and the inputs of each.
KNOWN, NEW = "known", "new"
NUMBER = "acceptance_no"
COMPLAINT = "complaint."
#: The complaint a regulator forwards came through the regulator (the API sets it too).
CHANNEL = COMPLAINT + "channel"
#: Inputs labelled otherwise than the commands' of the same name (a remedy's `due_at`).
LABELS = {"due_at": "appeal.due_at"}


async def _fields(api: Api) -> list[Field] | None:
    """The appeal's inputs as the escalation service declares its body (None: it cannot be
    reached); the complaint's channel is not asked."""
    fields = await commands.body_fields(api, APPEAL)
    if fields is None:
        return None
    return [replace(f, label=LABELS.get(f.name, f.label)) for f in fields if f.name != CHANNEL]


def _page(
    user: Signed,
    fields: list[Field],
    *,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    return user.page(
        "appeal.html",
        status=status,
        appeal=[f for f in fields if f.name != NUMBER and not f.name.startswith(COMPLAINT)],
        number=[f for f in fields if f.name == NUMBER],
        complaint=[f for f in fields if f.name.startswith(COMPLAINT)],
        values=values,
        about=values.get("about") or KNOWN,
        errors=errors or {},
        error=error,
        # a new key for every form shown: a double submit files the appeal once
        idempotency_key=str(uuid.uuid4()),
    )


def appeal_body(fields: list[Field], form: dict[str, str], local_time: Any) -> dict[str, Any]:
    """The form as a POST /appeals body: the inputs of the kind of appeal chosen (the other
    kind's are left out), the complaint's channel the regulator."""
    about = form.get("about")
    chosen = [
        f
        for f in fields
        if not (about == KNOWN and f.name.startswith(COMPLAINT))
        and not (about == NEW and f.name == NUMBER)
    ]
    body = commands.request_body(chosen, form, local_time)
    if isinstance(body.get("complaint"), dict):
        body["complaint"]["channel"] = Channel.REGULATOR.value
    return body


@router.get("/appeal")
async def appeal_form(
    user: Viewer, acceptance_no: Annotated[str | None, Query(max_length=32)] = None
) -> Response:
    user.require(ACCEPT_ROLES)
    fields = await _fields(user.api)
    if fields is None:
        return user.unreachable(SERVICE)
    values = {f.name: f.default for f in fields if f.default}
    values.update({"about": KNOWN, NUMBER: (acceptance_no or "").strip()})
    return _page(user, fields, values=values)


@router.post("/appeal")
async def file_appeal(request: Request, user: Sender) -> Response:
    """Sent with the key the form was shown with; on 201 the complaint's page, on 422 the
    form again with each error beside its input."""
    fields = await _fields(user.api)
    if fields is None:
        return user.unreachable(SERVICE)
    form = await read_form(request)
    body = appeal_body(fields, form, local_times(request))
    answer = await user.api.post(SERVICE, PATH, body, {"Idempotency-Key": idempotency_key(form)})
    if user.current(answer).ok:
        page = f"{session.base(request)}/complaints/{answer.body['id']}"
        return RedirectResponse(f"{page}?done={Command.ESCALATE.value}", status_code=303)
    placed, error = commands.refusal(fields, answer, user.t)
    return _page(user, fields, values=form, errors=placed, error=error, status=answer.status)
