"""Webhook subscriptions (admin only): who is sent which events, and what became of each
delivery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status

from services.intake.schemas import (
    DeliveryView,
    SubscriptionCreated,
    SubscriptionRequest,
    SubscriptionView,
)
from shared.domain.context import Actor, CommandContext
from shared.http.auth import require_roles
from shared.http.deps import SHOWN_ONCE, ClockDep, SettingsDep, StoreDep, command_context
from shared.http.errors import COMMAND_RESPONSES, READ_RESPONSES, invalid_field
from shared.http.routes import ADMIN_ROLES
from shared.webhooks import subscriptions as hooks

router = APIRouter(tags=["webhooks"], responses=READ_RESPONSES)

#: Creating one is a command (Idempotency-Key honoured); reading and deleting them are not.
AdminCtx = Annotated[CommandContext, Depends(command_context(*ADMIN_ROLES))]
Admin = Annotated[Actor, Depends(require_roles(*ADMIN_ROLES))]
SubscriptionId = Annotated[str, Path(max_length=36, examples=["5d0f…"])]


def _unknown(subscription_id: str) -> HTTPException:
    return HTTPException(404, f"No webhook subscription {subscription_id}.")


def _gone(subscription_id: str, gone: hooks.SubscriptionDeleted) -> HTTPException:
    return HTTPException(
        410, f"Webhook subscription {subscription_id} was {gone}; nothing is sent to it."
    )


@router.post(
    "/subscriptions",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionCreated,
    responses=COMMAND_RESPONSES,
)
async def subscribe(
    body: SubscriptionRequest,
    ctx: AdminCtx,
    store: StoreDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> SubscriptionCreated:
    """Send the events of these types, stored from now on, to this URL: each delivery is
    signed per the Standard Webhooks spec (`webhook-id`, `webhook-timestamp`,
    `webhook-signature`) with the secret answered here, once. Personal data is masked as in
    the regulator's audit export unless `sees_personal_data`."""
    refusal = hooks.url_refusal(body.url, local_allowed=settings.webhook_local_urls_allowed)
    if refusal:
        raise invalid_field("body", "url", refusal)
    request.scope.setdefault("state", {})[SHOWN_ONCE] = ("secret",)
    created = await hooks.subscribe(
        store,
        url=body.url,
        event_types=body.event_types,
        sees_personal_data=body.sees_personal_data,
        by=ctx.actor.id,
        at=ctx.at,
    )
    response.headers["Location"] = f"/subscriptions/{created.subscription['id']}"
    return SubscriptionCreated(**created.subscription, secret=created.secret)


@router.get("/subscriptions", response_model=list[SubscriptionView])
async def list_subscriptions(_: Admin, store: StoreDep) -> list[SubscriptionView]:
    """The live subscriptions, oldest first (never their secrets)."""
    return [SubscriptionView(**s) for s in await hooks.subscriptions(store.engine)]


@router.get(
    "/subscriptions/{subscription_id}",
    response_model=SubscriptionView,
    responses={410: {"description": "The subscription was deleted"}},
)
async def read_subscription(
    subscription_id: SubscriptionId, _: Admin, store: StoreDep
) -> SubscriptionView:
    """A live subscription (where a creation's `Location` points), never its secret."""
    try:
        found = await hooks.subscription(store.engine, subscription_id)
    except hooks.SubscriptionDeleted as gone:
        raise _gone(subscription_id, gone) from gone
    if found is None:
        raise _unknown(subscription_id)
    return SubscriptionView(**found)


@router.delete("/subscriptions/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
async def unsubscribe(
    subscription_id: SubscriptionId, admin: Admin, store: StoreDep, clock: ClockDep
) -> None:
    """Delete a subscription: nothing more is sent to it, not even what was still pending;
    the API serves nothing more of it (its deliveries answer 410; the database keeps them)."""
    if not await hooks.unsubscribe(store.engine, subscription_id, by=admin.id, at=clock()):
        raise _unknown(subscription_id)


@router.get(
    "/subscriptions/{subscription_id}/deliveries",
    response_model=list[DeliveryView],
    responses={410: {"description": "The subscription was deleted"}},
)
async def deliveries(
    subscription_id: SubscriptionId,
    _: Admin,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryView]:
    """A live subscription's deliveries, newest event first, each with every attempt made
    (410 once it is deleted: they stay in the database for the operator, not in the API)."""
    try:
        found = await hooks.deliveries_of(store.engine, subscription_id, limit)
    except hooks.SubscriptionDeleted as gone:
        raise _gone(subscription_id, gone) from gone
    if found is None:
        raise _unknown(subscription_id)
    return [DeliveryView(**d) for d in found]
