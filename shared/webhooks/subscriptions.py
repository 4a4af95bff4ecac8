"""Webhook subscriptions: which events they ask for, where they go, and what became of each
delivery. An admin keeps them (`POST/GET/DELETE /subscriptions` on intake)."""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.domain.complaint import Complaint
from shared.domain.indexes import MajorIncident
from shared.readmodel.tables import projection_tracking
from shared.readmodel.times import from_db, to_utc
from shared.store.facade import ComplaintStore
from shared.webhooks.tables import webhook_attempts, webhook_deliveries, webhook_subscriptions

#: The aggregates whose events a subscription may ask for (intake's other index aggregates
#: are bookkeeping, not news).
AGGREGATES = (Complaint, MajorIncident)
#: Every event type a subscription may name: `<aggregate>.<event>`, as the audit export
#: names them (`aggregate`, `type`).
EVENT_TYPES: frozenset[str] = frozenset(
    f"{aggregate.__name__}.{name}"
    for aggregate in AGGREGATES
    for name, value in vars(aggregate).items()
    if isinstance(value, type)
    and issubclass(value, aggregate.Event)
    and name not in {"Event", "Created"}
)
SECRET_PREFIX = "whsec_"
#: Hosts that are this machine whatever they resolve to.
LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal")
#: The well-known NAT64 prefix (RFC 6052): its last 32 bits are an IPv4 address.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


#: The name of the projection that enqueues deliveries (shared.webhooks.projection).
PROJECTION = "webhooks"


async def hold_position(conn: AsyncConnection) -> int:
    """The position the deliveries' projection has reached, locked until the transaction
    ends (PostgreSQL; SQLite has one writer at a time anyway). A subscription takes its
    `after_position` so, and a batch reads the subscriptions so: neither slips between the
    other's reads, so no event after a subscription's is missed."""
    table = projection_tracking
    held = await conn.execute(
        select(table.c.position).where(table.c.name == PROJECTION).with_for_update()
    )
    return int(held.scalar() or 0)


def event_type(aggregate: str, type_: str) -> str:
    return f"{aggregate}.{type_}"


def webhook_id(subscription_id: str, position: int) -> str:
    """The `webhook-id` of a delivery: the same on every attempt, so a receiver drops resends."""
    return f"msg_{subscription_id.replace('-', '')}_{position}"


def secret_purpose(subscription_id: str) -> str:
    """What a subscription's sealed secret is bound to (shared.store.keystore.Kek.seal)."""
    return f"webhook:{subscription_id}"


def is_local_address(address: str) -> bool:
    """Loopback, private, link-local (cloud metadata), unspecified or reserved: never a
    receiver's address unless local receivers are allowed (SSRF)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address carried inside an IPv6 one reaches that IPv4 host: judge that.
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and ip in NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            ip = inner
    return not ip.is_global or ip.is_multicast


#: A receiver's URL as RFC 3986 allows it (ASCII; a byte outside the allowed characters
#: percent-encoded), http or https, no user info, no fragment: the schema states it, and
#: `url_refusal` applies it.
_UNRESERVED = r"[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2}"
RECEIVER_URL_PATTERN = (
    r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?"
    rf"(/({_UNRESERVED})*)?(\?({_UNRESERVED}|\?)*)?$"
)
_RECEIVER_URL = re.compile(RECEIVER_URL_PATTERN)


def url_refusal(url: str, *, local_allowed: bool) -> str | None:
    """Why a receiver's URL is refused, or None: https only, and no host on this machine or
    a private network, unless local receivers are allowed (development, or the setting)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL with a host"
    if parts.username or parts.password:
        return "must not carry credentials"
    if not _RECEIVER_URL.fullmatch(url):  # (not `match`: `$` passes a final newline)
        return (
            "must be an http(s) URL as RFC 3986 writes it: ASCII, other characters "
            "percent-encoded, no fragment"
        )
    if local_allowed:
        return None
    if parts.scheme != "https":
        return "must be https (http only for local receivers, COMPLAINTS_WEBHOOK_LOCAL_URLS)"
    host = parts.hostname.lower().rstrip(".")
    if host == "localhost" or host.endswith(LOCAL_NAMES):
        return "must not name this machine or a private network"
    try:
        local = is_local_address(host)
    except ValueError:
        return None  # a name: its addresses are checked at each delivery
    if local:
        return "must not be a loopback, private, link-local or reserved address"
    return None


@dataclass(frozen=True)
class Created:
    subscription: dict[str, Any]
    #: The signing secret, shown this once (stored sealed under the KEK).
    secret: str


_PUBLIC_COLUMNS = (
    webhook_subscriptions.c.subscription_id,
    webhook_subscriptions.c.url,
    webhook_subscriptions.c.event_types,
    webhook_subscriptions.c.sees_personal_data,
    webhook_subscriptions.c.created_at,
    webhook_subscriptions.c.created_by,
)


def _public(row: Any) -> dict[str, Any]:
    return {
        "id": row["subscription_id"],
        "url": row["url"],
        "event_types": list(row["event_types"]),
        "sees_personal_data": row["sees_personal_data"],
        "created_at": from_db(row["created_at"]),
        "created_by": row["created_by"],
    }


async def subscribe(
    store: ComplaintStore,
    *,
    url: str,
    event_types: list[str],
    sees_personal_data: bool,
    by: str,
    at: datetime,
) -> Created:
    """Create a subscription to the events stored from now on; its secret is returned once."""
    subscription_id = str(uuid.uuid4())
    secret = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    kek_id, sealed = await store.seal_secret(secret.encode(), secret_purpose(subscription_id))
    row = {
        "subscription_id": subscription_id,
        "url": url,
        "event_types": sorted(set(event_types)),
        "sees_personal_data": sees_personal_data,
        "secret_kek": kek_id,
        "secret_sealed": sealed,
        "created_at": to_utc(at),
        "created_by": by,
    }
    async with store.engine.begin() as conn:
        # From the events committed after now: the head, read while no batch of the
        # deliveries' projection can read the subscriptions (`hold_position`).
        await hold_position(conn)
        row["after_position"] = await store.ping()
        await conn.execute(webhook_subscriptions.insert().values(row))
    return Created(_public(row), secret)


async def subscriptions(engine: AsyncEngine) -> list[dict[str, Any]]:
    """The live subscriptions, oldest first (never their secrets)."""
    table = webhook_subscriptions
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(*_PUBLIC_COLUMNS)
            .where(table.c.deleted_at.is_(None))
            .order_by(table.c.created_at, table.c.subscription_id)
        )
        return [_public(row._mapping) for row in rows]


async def unsubscribe(engine: AsyncEngine, subscription_id: str, *, by: str, at: datetime) -> bool:
    """Delete a subscription: it gets nothing more (its pending deliveries are cancelled);
    what it was sent stays in the database. False if there was no live subscription of that id."""
    subs, deliveries = webhook_subscriptions, webhook_deliveries
    async with engine.begin() as conn:
        gone = await conn.execute(
            update(subs)
            .where(subs.c.subscription_id == subscription_id, subs.c.deleted_at.is_(None))
            .values(deleted_at=to_utc(at), deleted_by=by)
        )
        if gone.rowcount != 1:
            return False
        await conn.execute(
            update(deliveries)
            .where(
                deliveries.c.subscription_id == subscription_id,
                deliveries.c.status == "pending",
            )
            .values(status="cancelled", finished_at=to_utc(at))
        )
    return True


class SubscriptionDeleted(Exception):
    """The subscription was deleted (at `at`, by `by`): its deliveries are no longer served."""

    def __init__(self, at: datetime, by: str) -> None:
        super().__init__(f"deleted at {to_utc(at).isoformat()} by {by}")
        self.at, self.by = at, by


async def subscription(engine: AsyncEngine, subscription_id: str) -> dict[str, Any] | None:
    """A live subscription (never its secret); None if no subscription has that id;
    SubscriptionDeleted if it was deleted."""
    async with engine.connect() as conn:
        return await _live(conn, subscription_id)


async def _live(conn: AsyncConnection, subscription_id: str) -> dict[str, Any] | None:
    subs = webhook_subscriptions.c
    row = (
        await conn.execute(
            select(*_PUBLIC_COLUMNS, subs.deleted_at, subs.deleted_by).where(
                subs.subscription_id == subscription_id
            )
        )
    ).first()
    if row is None:
        return None
    if row.deleted_at is not None:
        raise SubscriptionDeleted(row.deleted_at, row.deleted_by)
    return _public(row._mapping)


async def deliveries_of(
    engine: AsyncEngine, subscription_id: str, limit: int
) -> list[dict[str, Any]] | None:
    """A live subscription's deliveries, newest event first, each with every attempt; None if
    no subscription has that id; SubscriptionDeleted if it was deleted (the rows stay in the
    database, for the operator: deleting a resource ends what the API serves of it)."""
    d, a = webhook_deliveries.c, webhook_attempts.c
    async with engine.connect() as conn:
        if await _live(conn, subscription_id) is None:
            return None
        rows = (
            await conn.execute(
                select(webhook_deliveries)
                .where(d.subscription_id == subscription_id)
                .order_by(d.position.desc())
                .limit(limit)
            )
        ).all()
        tried: dict[int, list[dict[str, Any]]] = {}
        if rows:
            attempts = await conn.execute(
                select(webhook_attempts)
                .where(
                    a.subscription_id == subscription_id,
                    a.position.in_([row.position for row in rows]),
                )
                .order_by(a.position, a.attempt)
            )
            for attempt in attempts:
                tried.setdefault(attempt.position, []).append(
                    {
                        "attempt": attempt.attempt,
                        "at": from_db(attempt.at),
                        "status_code": attempt.status_code,
                        "error": attempt.error,
                        "duration_ms": attempt.duration_ms,
                    }
                )
    return [
        {
            "webhook_id": webhook_id(subscription_id, row.position),
            "position": row.position,
            "event_type": row.event_type,
            "event_at": from_db(row.event_at),
            "status": row.status,
            "attempts": tried.get(row.position, []),
            "next_attempt_at": from_db(row.next_attempt_at) if row.status == "pending" else None,
            "last_status_code": row.last_status_code,
            "last_error": row.last_error,
            "finished_at": from_db(row.finished_at),
        }
        for row in rows
    ]


async def reseal_secrets(store: ComplaintStore) -> int:
    """Seal under the current KEK every live subscription's secret sealed under an older one
    (after a KEK rotation, before a purge destroys the old KEK); returns how many."""
    table = webhook_subscriptions
    current = await store.current_kek_id()
    async with store.engine.connect() as conn:
        older = (
            await conn.execute(
                select(table.c.subscription_id, table.c.secret_kek, table.c.secret_sealed).where(
                    table.c.deleted_at.is_(None), table.c.secret_kek != current
                )
            )
        ).all()
    for row in older:
        purpose = secret_purpose(row.subscription_id)
        plain = await store.unseal_secret(row.secret_kek, row.secret_sealed, purpose)
        kek_id, sealed = await store.seal_secret(plain, purpose)
        async with store.engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(
                    table.c.subscription_id == row.subscription_id,
                    table.c.secret_kek == row.secret_kek,
                )
                .values(secret_kek=kek_id, secret_sealed=sealed)
            )
    return len(older)
