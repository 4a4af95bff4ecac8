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
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from shared.console import commands, session
from shared.console.client import Api
from shared.console.pages import (
    Sender,
    Signed,
    Viewer,
    form_pairs,
    idempotency_key,
    local_times,
    read_form,
)
from shared.http.fields import IDENTIFIER_PATTERN
from shared.http.routes import ADMIN_ROLES, ERASURE, SUBSCRIPTIONS

router = APIRouter(prefix=session.PREFIX, include_in_schema=False)

#: The most deliveries a subscription's page lists, and complaints an erasure's confirmation.
DELIVERIES_SHOWN = 50
COMPLAINTS_SHOWN = 50
#: The longest customer id the form takes (the API's identifier).
MAX_CUSTOMER_ID = 64


def customer_id(value: str) -> str | None:
    """A customer id as a form sends it, if it is one: it goes into the route's path (and a
    segment of dots would steer it)."""
    value = value.strip()
    return value if re.fullmatch(IDENTIFIER_PATTERN, value) and value.strip(".") else None


async def subscription_fields(api: Api) -> list[commands.Field] | None:
    """The new subscription's form, as the route's body asks; None if intake's document
    cannot be had."""
    return await commands.body_fields(api, SUBSCRIPTIONS)


# -- the page: subscriptions, a new one, an erasure's first step -------------------------------


@router.get("/admin")
async def admin_page(user: Viewer, deleted: Annotated[UUID | None, Query()] = None) -> Response:
    return await admin_response(user, deleted=deleted)


async def admin_response(
    user: Signed,
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
    listed = user.ok(await user.api.get(path, service=service))
    fields = await subscription_fields(user.api)
    return user.page(
        "admin.html",
        status=status,
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
async def subscribe(request: Request, user: Sender) -> Response:
    """The new subscription's form, sent to intake; its answer's page shows the secret, once.
    A refused field is shown beside it."""
    fields = await subscription_fields(user.api)
    service, path = SUBSCRIPTIONS
    if fields is None:
        message = user.t("command.unreachable").format(service=service.value)
        return await admin_response(user, status=503, error=message)
    form = commands.submitted(await form_pairs(request), fields)
    body = commands.request_body(fields, form, local_times(request))
    answer = await user.api.post(service, path, body, {"Idempotency-Key": idempotency_key(form)})
    if not user.current(answer).ok:
        placed, error = commands.refusal(fields, answer, user.t)
        return await admin_response(
            user, status=answer.status, values=form, errors=placed, error=error
        )
    created: dict[str, Any] = answer.body
    return user.page(
        "admin_subscription.html",
        status=answer.status,
        s=created,
        created=True,
        secret=created.get("secret"),  # None: a repeated submit (the secret is never kept)
        deliveries=[],
        idempotency_key=str(uuid.uuid4()),
    )


@router.get("/admin/subscriptions/{subscription_id}")
async def subscription_page(user: Viewer, subscription_id: UUID) -> Response:
    """A subscription (never its secret) with its latest deliveries and their attempts."""
    service, path = SUBSCRIPTIONS
    one = user.ok(await user.api.get(f"{path}/{subscription_id}", service=service))
    deliveries = await user.api.get(
        f"{path}/{subscription_id}/deliveries",
        [("limit", str(DELIVERIES_SHOWN))],
        service=service,
    )
    return user.page(
        "admin_subscription.html",
        s=one.body,
        created=False,
        secret=None,
        deliveries=deliveries.body if deliveries.ok else [],
        deliveries_error=None if deliveries.ok else deliveries.detail,
        idempotency_key=str(uuid.uuid4()),
    )


@router.post("/admin/subscriptions/{subscription_id}/delete")
async def unsubscribe(request: Request, user: Sender, subscription_id: UUID) -> Response:
    """The delete button: `DELETE /subscriptions/{id}`; nothing more is sent to it."""
    form = await read_form(request)
    service, path = SUBSCRIPTIONS
    user.ok(
        await user.api.delete(
            service, f"{path}/{subscription_id}", {"Idempotency-Key": idempotency_key(form)}
        )
    )
    admin = session.base(request) + "/admin"
    return RedirectResponse(f"{admin}?deleted={subscription_id}", status_code=303)


# -- a customer's erasure -----------------------------------------------------------------------


@router.post("/admin/erasure")
async def erasure_confirmation(request: Request, user: Sender) -> Response:
    """The erasure's second step: what will happen, the customer's complaints we list, and the
    id to type again. Nothing is sent yet."""
    user.require(ADMIN_ROLES)
    typed = (await read_form(request)).get("customer_id", "")
    customer = customer_id(typed)
    if customer is None:
        return await admin_response(
            user, status=422, customer=typed.strip()[:MAX_CUSTOMER_ID],
            customer_error=user.t("erasure.bad_id"),
        )  # fmt: skip
    return await confirmation(user, customer)


async def confirmation(
    user: Signed,
    customer: str,
    *,
    status: int = 200,
    typed: str = "",
    mismatch: str | None = None,
) -> Response:
    params = [("customer_id", customer), ("limit", str(COMPLAINTS_SHOWN))]
    listed = user.current(await user.api.get("/complaints", params))
    return user.page(
        "admin_erasure.html",
        status=status,
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
async def erase(request: Request, user: Sender) -> Response:
    """The erasure, sent only when the id typed again is the one confirmed."""
    form = await read_form(request)
    customer = customer_id(form.get("customer_id", ""))
    if customer is None:
        return user.error(400, user.t("command.bad_form"))
    typed = form.get("confirmation", "").strip()
    if typed != customer:
        return await confirmation(
            user, customer, status=422, typed=typed[:MAX_CUSTOMER_ID],
            mismatch=user.t("erasure.mismatch"),
        )  # fmt: skip
    service, path = ERASURE
    answer = await user.api.post(
        service,
        path.replace("{customer_id}", quote(customer, safe="")),
        {},
        {"Idempotency-Key": idempotency_key(form)},
    )
    if user.current(answer).status == 404:  # nothing held of that customer
        return user.page(
            "admin_erasure.html", status=404, stage="none", customer=customer,
            detail=answer.detail,
        )  # fmt: skip
    erased = user.ok(answer).body
    return user.page("admin_erasure.html", stage="done", customer=customer, e=erased)
