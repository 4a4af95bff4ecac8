"""Sends the webhook deliveries the projection enqueued (shared.webhooks.projection).

Each attempt POSTs the event, signed per the Standard Webhooks spec, and is recorded with the
delivery's new state in one transaction; a failure is tried again after a backoff that
doubles up to a maximum, and given up after the last attempt. The body is built at each
attempt and never stored: masked, it is the line the audit chain keeps for the regulator
(`audit_chain.masked_line`); unmasked, the event's export line as it reads now (after an
erasure, the digests). One sender runs at a time among the intake processes (a lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import insert, select, update
from standardwebhooks import Webhook

from shared.audit.chain import line_body, masked, record_of
from shared.audit.tables import audit_chain
from shared.domain.clock import Clock
from shared.readmodel.times import from_db, to_utc
from shared.store.facade import ComplaintStore
from shared.store.lease import Lease
from shared.webhooks.subscriptions import is_local_address, secret_purpose, webhook_id
from shared.webhooks.tables import webhook_attempts, webhook_deliveries, webhook_subscriptions

log = logging.getLogger("complaints.webhooks")

Resolve = Callable[[str], Awaitable[list[str]]]


async def resolve_host(host: str) -> list[str]:
    """The addresses a host name resolves to (an address resolves to itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class Refused(Exception):
    """The attempt was not made (a local address, an unreadable secret)."""


class WebhookSender:
    def __init__(
        self,
        store: ComplaintStore,
        client: httpx.AsyncClient,
        *,
        clock: Clock,
        backoff_seconds: float,
        backoff_max_seconds: float,
        max_attempts: int,
        local_allowed: bool,
        resolve: Resolve = resolve_host,
        poll_seconds: float = 1.0,
        lease_seconds: float = 10.0,
    ) -> None:
        self.store = store
        self.client = client
        self.clock = clock
        self.backoff = timedelta(seconds=backoff_seconds)
        self.backoff_max = timedelta(seconds=backoff_max_seconds)
        self.max_attempts = max_attempts
        self.local_allowed = local_allowed
        self.resolve = resolve
        self.poll_seconds = poll_seconds
        holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lease = Lease(store.engine, "webhook-sender", holder, lease_seconds)

    async def run(self) -> None:
        try:
            while True:
                try:
                    if await self.lease.acquire():
                        await self.send_once(still_leading=self.lease.acquire)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("webhook sending failed; retrying")
                await asyncio.sleep(self.poll_seconds)
        finally:
            with contextlib.suppress(Exception):
                await self.lease.release()

    def wait_after(self, attempts: int) -> timedelta:
        """How long after its `attempts`-th failed attempt a delivery is tried again."""
        doublings = min(max(attempts - 1, 0), 30)
        return min(self.backoff * (1 << doublings), self.backoff_max)

    async def send_once(
        self, limit: int = 100, still_leading: Callable[[], Awaitable[bool]] | None = None
    ) -> int:
        """Attempt every delivery that is due; returns how many were delivered."""
        d, s = webhook_deliveries.c, webhook_subscriptions.c
        async with self.store.engine.connect() as conn:
            due = (
                await conn.execute(
                    select(
                        d.subscription_id,
                        d.position,
                        d.event_type,
                        d.event_at,
                        d.attempts,
                        s.url,
                        s.sees_personal_data,
                        s.secret_kek,
                        s.secret_sealed,
                    )
                    .join(webhook_subscriptions, s.subscription_id == d.subscription_id)
                    .where(
                        d.status == "pending",
                        d.next_attempt_at <= to_utc(self.clock()),
                        s.deleted_at.is_(None),
                    )
                    .order_by(d.next_attempt_at, d.position)
                    .limit(limit)
                )
            ).all()
        delivered = 0
        for row in due:
            if still_leading is not None and not await still_leading():
                break
            delivered += await self._attempt(row)
        return delivered

    async def _attempt(self, row: Any) -> int:
        msg_id = webhook_id(row.subscription_id, row.position)
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            body = await self._body(row)
            if body is None:  # the audit chain has not reached the event yet: next time
                return 0
            secret = await self._secret(row)
            await self._check_address(row.url)
            status_code = await self._post(row, body, secret)
            if not 200 <= status_code < 300:
                error = f"the receiver answered {status_code}"
        except Refused as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # recorded and tried again; the others go on meanwhile
            log.exception("webhook %s could not be attempted", msg_id)
            error = f"not sent: {type(exc).__name__}"
        duration_ms = (time.monotonic() - started) * 1000
        await self._record(row, status_code, error, duration_ms)
        if error:
            log.warning("webhook %s not delivered: %s", msg_id, error)
        return 0 if error else 1

    async def _body(self, row: Any) -> str | None:
        """The delivery's JSON: `type`, `timestamp` (the event's) and `data` (its export line)."""
        if row.sees_personal_data:
            line: str | None = line_body(record_of(await self._event(row.position)))
        else:
            async with self.store.engine.connect() as conn:
                chained = (
                    await conn.execute(
                        select(audit_chain.c.masked_line).where(
                            audit_chain.c.position == row.position
                        )
                    )
                ).first()
            if chained is None:
                return None
            line = chained.masked_line  # null on links made before the chain kept them
            if line is None:
                line = line_body(masked(record_of(await self._event(row.position))))
        at = from_db(row.event_at)
        assert at is not None
        head = json.dumps({"type": row.event_type, "timestamp": at.isoformat()})
        return f'{head[:-1]},"data":{line}}}'

    async def _event(self, position: int) -> Any:
        events = await self.store.read(position - 1, 1)
        if not events or events[0].position != position:
            raise LookupError(f"no event at position {position}")
        return events[0]

    async def _secret(self, row: Any) -> str:
        try:
            plain = await self.store.unseal_secret(
                row.secret_kek, row.secret_sealed, secret_purpose(row.subscription_id)
            )
        except Exception as exc:  # its KEK was destroyed: the subscription must be made anew
            raise Refused(f"the subscription's secret cannot be read: {exc}"[:300]) from exc
        return plain.decode()

    async def _check_address(self, url: str) -> None:
        """No delivery to this machine or a private network unless allowed (SSRF), checked
        at every attempt: a name may come to resolve elsewhere."""
        if self.local_allowed:
            return
        host = urlsplit(url).hostname or ""
        try:
            addresses = await self.resolve(host)
        except OSError as exc:
            raise Refused(f"{host} does not resolve: {exc}") from exc
        if any(is_local_address(address) for address in addresses):
            raise Refused(f"{host} resolves to a local address; not sent")

    async def _post(self, row: Any, body: str, secret: str) -> int:
        msg_id = webhook_id(row.subscription_id, row.position)
        now = self.clock().astimezone(UTC)
        signature = Webhook(secret).sign(msg_id, now, body)
        response = await self.client.post(
            row.url,
            content=body.encode(),
            headers={
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signature,
            },
        )
        return response.status_code

    async def _record(
        self, row: Any, status_code: int | None, error: str | None, duration_ms: float
    ) -> None:
        """The attempt, and the delivery's new state, in one transaction; nothing if another
        sender recorded this attempt first."""
        d = webhook_deliveries.c
        now = self.clock()
        attempt = row.attempts + 1
        if error is None:
            state: dict[str, Any] = {"status": "delivered", "finished_at": to_utc(now)}
        elif attempt >= self.max_attempts:
            state = {"status": "failed", "finished_at": to_utc(now)}
        else:
            state = {"next_attempt_at": to_utc(now + self.wait_after(attempt))}
        async with self.store.engine.begin() as conn:
            moved = await conn.execute(
                update(webhook_deliveries)
                .where(
                    d.subscription_id == row.subscription_id,
                    d.position == row.position,
                    d.status == "pending",
                    d.attempts == row.attempts,
                )
                .values(
                    attempts=attempt,
                    last_status_code=status_code,
                    last_error=error[:500] if error else None,
                    **state,
                )
            )
            if moved.rowcount != 1:
                return
            await conn.execute(
                insert(webhook_attempts).values(
                    subscription_id=row.subscription_id,
                    position=row.position,
                    attempt=attempt,
                    at=to_utc(now),
                    status_code=status_code,
                    error=error[:500] if error else None,
                    duration_ms=duration_ms,
                )
            )
