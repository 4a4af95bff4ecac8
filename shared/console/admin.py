"""The admin's page (`/console/admin`): the webhook subscriptions and a customer's erasure,
both served by intake alone and called there with the admin's token.

- Webhooks: the live subscriptions; a new one from a form built from the request body of
  `POST /subscriptions` in intake's OpenAPI document (as the complaint page's command forms
  are: `shared.console.commands`), its signing secret shown on the answer's page, once; each
  subscription's page with its deliveries and a button that deletes it.
- Erasure: a customer id, then a page that says what will happen and asks for the id again;
  only when both agree is `POST /customers/{customer_id}/erasure` sent, and its account (or
  its 404: nothing held of that customer) shown.

Every form is posted from the console's own origin and sent with an Idempotency-Key. Who may
do any of it is the API's answer: a non-admin's 403 is shown as it says it."""

from __future__ import annotations

import re
import uuid
from functools import partial
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from shared.console import commands, session
from shared.console.client import Api
from shared.console.i18n import Translator, language
from shared.console.pages import (
    display_tz,
    idempotency_key,
    local_time,
    may,
    problem,
    refused_origin,
    render,
    signed_out,
    signin_page,
)
from shared.http.auth import Principal
from shared.http.fields import IDENTIFIER_PATTERN
from shared.http.routes import ADMIN_ROLES, ERASURE, SUBSCRIPTIONS

router = APIRouter(prefix=session.PREFIX, include_in_schema=False)

#: The most deliveries a subscription's page lists, and complaints an erasure's confirmation.
DELIVERIES_SHOWN = 50
COMPLAINTS_SHOWN = 50
#: The longest customer id the form takes (the API's identifier).
MAX_CUSTOMER_ID = 64


def _t(request: Request) -> Translator:
    return Translator(language(request.cookies.get(session.LANGUAGE_COOKIE)))


def _admin_home(request: Request) -> str:
    return session.root(request) + session.PREFIX + "/admin"


async def _pairs(request: Request) -> list[tuple[str, str]]:
    """An HTML form's fields (application/x-www-form-urlencoded), every value of each name."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return parse_qsl(body, keep_blank_values=True)


def customer_id(value: str) -> str | None:
    """A customer id as a form sends it, if it is one: it goes into the route's path (and a
    segment of dots would steer it)."""
    value = value.strip()
    return value if re.fullmatch(IDENTIFIER_PATTERN, value) and value.strip(".") else None


async def subscription_fields(api: Api) -> list[commands.Field] | None:
    """The new subscription's form, as the route's body asks; None if intake's document
    cannot be had."""
    service, path = SUBSCRIPTIONS
    schema = await api.request_schema(service, path)
    return None if schema is None else commands.form_fields(*schema)


# -- the page: subscriptions, a new one, an erasure's first step -------------------------------


@router.get("/admin")
async def admin_page(request: Request, deleted: Annotated[UUID | None, Query()] = None) -> Response:
    found = await session.signed_in(request)
    if found is None:
        return signin_page(request, status=401)
    token, principal = found
    return await admin_response(request, Api(request, token), principal, deleted=deleted)


async def admin_response(
    request: Request,
    api: Api,
    principal: Principal,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    customer: str = "",
    customer_error: str | None = None,
    deleted: UUID | None = None,
) -> Response:
    """The subscriptions as the API lists them (a non-admin: its 403), the form of a new one
    (with a refused one's values and errors) and the erasure's first step."""
    service, path = SUBSCRIPTIONS
    listed = await api.get(path, service=service)
    if listed.status == 401:
        return signed_out(request)
    if not listed.ok:
        return problem(request, principal, listed)
    fields = await subscription_fields(api)
    return render(
        request,
        "admin.html",
        status=status,
        principal=principal,
        subscriptions=listed.body,
        fields=fields or [],
        unavailable=service.value if fields is None else None,
        values=values or {},
        errors=errors or {},
        error=error,
        customer=customer,
        customer_error=customer_error,
        max_customer_id=MAX_CUSTOMER_ID,
        deleted=deleted,
        # a new key for every form shown: a double submit subscribes once
        idempotency_key=str(uuid.uuid4()),
    )


# -- webhook subscriptions ----------------------------------------------------------------------


@router.post("/admin/subscriptions")
async def subscribe(request: Request) -> Response:
    """The new subscription's form, sent to intake; its answer's page shows the secret, once.
    A refused field is shown beside it."""
    if not session.same_origin(request):
        return refused_origin(request)
    found = await session.signed_in(request)
    if found is None:
        return signin_page(request, status=401)
    token, principal = found
    api = Api(request, token)
    t = _t(request)
    fields = await subscription_fields(api)
    service, path = SUBSCRIPTIONS
    if fields is None:
        message = t("command.unreachable").format(service=service.value)
        return await admin_response(request, api, principal, status=503, error=message)
    form = commands.submitted(await _pairs(request), fields)
    body = commands.request_body(fields, form, partial(local_time, tz=display_tz(request)))
    answer = await api.post(service, path, body, {"Idempotency-Key": idempotency_key(form)})
    if answer.status == 401:
        return signed_out(request)
    if not answer.ok:
        placed, rest = commands.errors_by_field(fields, answer.field_errors())
        detail = t("new.errors") if placed else answer.detail
        return await admin_response(
            request, api, principal, status=answer.status, values=form, errors=placed,
            error=" ".join([detail, *rest]),
        )  # fmt: skip
    created: dict[str, Any] = answer.body
    return render(
        request,
        "admin_subscription.html",
        status=answer.status,
        principal=principal,
        s=created,
        created=True,
        secret=created.get("secret"),  # None: a repeated submit (the secret is never kept)
        deliveries=[],
        idempotency_key=str(uuid.uuid4()),
    )


@router.get("/admin/subscriptions/{subscription_id}")
async def subscription_page(request: Request, subscription_id: UUID) -> Response:
    """A subscription (never its secret) with its latest deliveries and their attempts."""
    found = await session.signed_in(request)
    if found is None:
        return signin_page(request, status=401)
    token, principal = found
    api = Api(request, token)
    service, path = SUBSCRIPTIONS
    one = await api.get(f"{path}/{subscription_id}", service=service)
    if one.status == 401:
        return signed_out(request)
    if not one.ok:
        return problem(request, principal, one)
    deliveries = await api.get(
        f"{path}/{subscription_id}/deliveries",
        [("limit", str(DELIVERIES_SHOWN))],
        service=service,
    )
    return render(
        request,
        "admin_subscription.html",
        principal=principal,
        s=one.body,
        created=False,
        secret=None,
        deliveries=deliveries.body if deliveries.ok else [],
        deliveries_error=None if deliveries.ok else deliveries.detail,
        idempotency_key=str(uuid.uuid4()),
    )


@router.post("/admin/subscriptions/{subscription_id}/delete")
async def unsubscribe(request: Request, subscription_id: UUID) -> Response:
    """The delete button: `DELETE /subscriptions/{id}`; nothing more is sent to it."""
    if not session.same_origin(request):
        return refused_origin(request)
    found = await session.signed_in(request)
    if found is None:
        return signin_page(request, status=401)
    token, principal = found
    form = dict(await _pairs(request))
    service, path = SUBSCRIPTIONS
    answer = await Api(request, token).delete(
        service, f"{path}/{subscription_id}", {"Idempotency-Key": idempotency_key(form)}
    )
    if answer.status == 401:
        return signed_out(request)
    if not answer.ok:
        return problem(request, principal, answer)
    return RedirectResponse(f"{_admin_home(request)}?deleted={subscription_id}", status_code=303)


# -- a customer's erasure -----------------------------------------------------------------------


@router.post("/admin/erasure")
async def erasure_confirmation(request: Request) -> Response:
    """The erasure's second step: what will happen, the customer's complaints we list, and the
    id to type again. Nothing is sent yet."""
    if not session.same_origin(request):
        return refused_origin(request)
    found = await session.signed_in(request)
    if found is None:
        return signin_page(request, status=401)
    token, principal = found
    t = _t(request)
    if not may(principal, ADMIN_ROLES):
        return render(
            request, "error.html", status=403, principal=principal, message=t("error.forbidden")
        )
    api = Api(request, token)
    typed = dict(await _pairs(request)).get("customer_id", "")
    customer = customer_id(typed)
    if customer is None:
        return await admin_response(
            request, api, principal, status=422, customer=typed.strip()[:MAX_CUSTOMER_ID],
            customer_error=t("erasure.bad_id"),
        )  # fmt: skip
    return await confirmation(request, api, principal, customer)


async def confirmation(
    request: Request,
    api: Api,
    principal: Principal,
    customer: str,
    *,
    status: int = 200,
    typed: str = "",
    mismatch: str | None = None,
) -> Response:
    listed = await api.get(
        "/complaints", [("customer_id", customer), ("limit", str(COMPLAINTS_SHOWN))]
    )
    if listed.status == 401:
        return signed_out(request)
    return render(
        request,
        "admin_erasure.html",
        status=status,
        principal=principal,
        stage="confirm",
        customer=customer,
        complaints=listed.body.get("items", []) if listed.ok else [],
        more=bool(listed.ok and listed.body.get("next_cursor")),
        typed=typed,
        mismatch=mismatch,
        max_customer_id=MAX_CUSTOMER_ID,
        # a new key each time the page is shown: a double submit erases once
        idempotency_key=str(uuid.uuid4()),
    )


@router.post("/admin/erasure/confirmed")
async def erase(request: Request) -> Response:
    """The erasure, sent only when the id typed again is the one confirmed."""
    if not session.same_origin(request):
        return refused_origin(request)
    found = await session.signed_in(request)
    if found is None:
        return signin_page(request, status=401)
    token, principal = found
    t = _t(request)
    api = Api(request, token)
    form = dict(await _pairs(request))
    customer = customer_id(form.get("customer_id", ""))
    if customer is None:
        return render(
            request, "error.html", status=400, principal=principal,
            message=t("command.bad_form"),
        )  # fmt: skip
    typed = form.get("confirmation", "").strip()
    if typed != customer:
        return await confirmation(
            request, api, principal, customer, status=422, typed=typed[:MAX_CUSTOMER_ID],
            mismatch=t("erasure.mismatch"),
        )  # fmt: skip
    service, path = ERASURE
    answer = await api.post(
        service,
        path.replace("{customer_id}", quote(customer, safe="")),
        {},
        {"Idempotency-Key": idempotency_key(form)},
    )
    if answer.status == 401:
        return signed_out(request)
    if answer.status == 404:
        return render(
            request, "admin_erasure.html", status=404, principal=principal, stage="none",
            customer=customer, detail=answer.detail,
        )  # fmt: skip
    if not answer.ok:
        return problem(request, principal, answer)
    return render(
        request, "admin_erasure.html", principal=principal, stage="done", customer=customer,
        e=answer.body,
    )  # fmt: skip
