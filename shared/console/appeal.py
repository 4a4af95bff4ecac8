"""A regulator's appeal (申诉) taken down in the console: the regulator's reference, its
deadline and reason, about a complaint we have (its acceptance number) or one we never had
(the acceptance fields). The form is the escalation service's POST /appeals body as its
OpenAPI document declares it; the API decides who may send it and whether it is valid."""

from __future__ import annotations

import uuid
from dataclasses import replace
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from shared.console import commands, pages, session
from shared.console.client import Api
from shared.console.commands import Field
from shared.console.i18n import Translator, language
from shared.domain.codes import Channel, Service
from shared.domain.lifecycle import Command
from shared.http.auth import Principal
from shared.http.routes import ACCEPT_ROLES

router = APIRouter(prefix=session.PREFIX, include_in_schema=False)

SERVICE, PATH = Service.ESCALATION, "/appeals"
#: The two kinds of appeal the form offers, and the inputs of each.
KNOWN, NEW = "known", "new"
NUMBER = "acceptance_no"
COMPLAINT = "complaint."
#: The complaint a regulator forwards came through the regulator (the API sets it too).
CHANNEL = COMPLAINT + "channel"
#: Inputs labelled otherwise than the commands' of the same name (a remedy's `due_at`).
LABELS = {"due_at": "appeal.due_at"}


def _t(request: Request) -> Translator:
    return Translator(language(request.cookies.get(session.LANGUAGE_COOKIE)))


async def _fields(api: Api) -> list[Field] | None:
    """The appeal's inputs as the escalation service declares its body (None: it cannot be
    reached); the complaint's channel is not asked."""
    schema = await api.request_schema(SERVICE, PATH)
    if schema is None:
        return None
    fields = commands.form_fields(*schema)
    return [replace(f, label=LABELS.get(f.name, f.label)) for f in fields if f.name != CHANNEL]


def _page(
    request: Request,
    principal: Principal,
    fields: list[Field],
    *,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    return pages.render(
        request,
        "appeal.html",
        status=status,
        principal=principal,
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
    request: Request,
    acceptance_no: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    found = await session.signed_in(request)
    if found is None:
        return pages.signin_page(request, status=401)
    token, principal = found
    t = _t(request)
    if not pages.may(principal, ACCEPT_ROLES):
        return pages.render(
            request, "error.html", status=403, principal=principal,
            message=t("error.forbidden"),
        )  # fmt: skip
    fields = await _fields(Api(request, token))
    if fields is None:
        return _unreachable(request, principal, t)
    values = {f.name: f.default for f in fields if f.default}
    values.update({"about": KNOWN, NUMBER: (acceptance_no or "").strip()})
    return _page(request, principal, fields, values=values)


@router.post("/appeal")
async def file_appeal(request: Request) -> Response:
    """Sent with the key the form was shown with; on 201 the complaint's page, on 422 the
    form again with each error beside its input."""
    if not session.same_origin(request):
        return pages.refused_origin(request)
    found = await session.signed_in(request)
    if found is None:
        return pages.signin_page(request, status=401)
    token, principal = found
    api = Api(request, token)
    t = _t(request)
    fields = await _fields(api)
    if fields is None:
        return _unreachable(request, principal, t)
    form = await pages.read_form(request)
    local = partial(pages.local_time, tz=pages.display_tz(request))
    answer = await api.post(
        SERVICE,
        PATH,
        appeal_body(fields, form, local),
        {"Idempotency-Key": pages.idempotency_key(form)},
    )
    if answer.status == 401:
        return pages.signed_out(request)
    if answer.ok:
        page = f"{session.root(request)}{session.PREFIX}/complaints/{answer.body['id']}"
        return RedirectResponse(f"{page}?done={Command.ESCALATE.value}", status_code=303)
    placed, rest = commands.errors_by_field(fields, answer.field_errors())
    detail = t("new.errors") if placed else answer.detail
    return _page(
        request,
        principal,
        fields,
        values=form,
        errors=placed,
        error=" ".join([detail, *rest]),
        status=answer.status,
    )


def _unreachable(request: Request, principal: Principal, t: Translator) -> Response:
    return pages.render(
        request, "error.html", status=503, principal=principal,
        message=t("command.unreachable").format(service=SERVICE.value),
    )  # fmt: skip
