"""Sends the webhook deliveries the projection enqueued (shared.webhooks.projection).

Each attempt POSTs the event, signed per the Standard Webhooks spec, and is recorded with the
delivery's new state in one transaction; a failure is tried again after a backoff that
doubles up to a maximum, and given up after the last attempt. The body is built at each
attempt and never stored: masked, it is the line the audit chain keeps for the regulator
(`audit_chain.masked_line`); unmasked, the event's export line as it reads now (after an
erasure, the digests). One sender runs at a time among the intake processes (a lease).

A receiver is never trusted with more than its answer's status: an attempt has one deadline
as a whole (`timeout_seconds`, however the receiver trickles), its body is not read, and the
delivery is claimed for the attempt before it is sent, so a second sender (after a lease
handover) or a deletion meanwhile never makes it go twice. Outside development the POST goes
to the very address that was checked (no second lookup a DNS answer could turn to this
machine), with the receiver's name as Host and TLS server name. One failing receiver holds
back its own deliveries, not the others': its pending deliveries wait with the failed one.
"""

from __future__ import annotations

import asyncio
import json
import logging
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
from shared.http.tracing import continued
from shared.readmodel.times import from_db, to_utc
from shared.store.facade import ComplaintStore
from shared.store.lease import Lease, holder_name, run_while_leading
from shared.webhooks.subscriptions import is_local_address, secret_purpose, webhook_id
from shared.webhooks.tables import webhook_attempts, webhook_deliveries, webhook_subscriptions

log = logging.getLogger("complaints.webhooks")

Resolve = Callable[[str], Awaitable[list[str]]]


async def resolve_host(host: str) -> list[str]:
    """The addresses a host name resolves to (an address resolves to itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


#: Seconds an attempt's claim on its delivery lasts beyond the attempt's deadline.
CLAIM_MARGIN_SECONDS = 5.0


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
        timeout_seconds: float = 10.0,
        traced: bool = False,
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
        self.timeout = timeout_seconds
        #: Traces on: each POST continues the trace of the request that stored its event.
        self.traced = traced
        #: The event this attempt read (its body and its trace both need it): read once.
        self._read: tuple[int, Any] | None = None
        #: How long an attempt holds its delivery: its deadline and a margin to record it.
        self.claim = timedelta(seconds=timeout_seconds + CLAIM_MARGIN_SECONDS)
        # The lease outlives an attempt: a sender is never overtaken in the middle of one.
        lease_seconds = max(10.0, timeout_seconds + 2 * CLAIM_MARGIN_SECONDS)
        self.lease = Lease(store.engine, "webhook-sender", holder_name(self), lease_seconds)

    async def run(self) -> None:
        async def step() -> bool:
            await self.send_once(still_leading=self.lease.acquire)
            return False

        await run_while_leading(
            self.lease,
            step,
            every=self.poll_seconds,
            failed="webhook sending failed; retrying",
            log=log,
        )

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
                        d.next_attempt_at,
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
        delivered, failing = 0, set()
        for row in due:
            if row.subscription_id in failing:
                continue  # its receiver just failed: its other deliveries wait with it
            if still_leading is not None and not await still_leading():
                break
            if not await self._claim(row):
                continue  # another sender has it, or the subscription was deleted
            outcome = await self._attempt(row)
            if outcome is None:  # not attempted yet: due again as it was
                await self._release(row)
            elif outcome:
                delivered += 1
            else:
                failing.add(row.subscription_id)
        return delivered

    async def _claim(self, row: Any) -> bool:
        """Hold the delivery for this attempt: only if it is still as it was read, pending,
        and its subscription live."""
        d, s = webhook_deliveries.c, webhook_subscriptions.c
        live = select(s.subscription_id).where(
            s.subscription_id == row.subscription_id, s.deleted_at.is_(None)
        )
        async with self.store.engine.begin() as conn:
            claimed = await conn.execute(
                update(webhook_deliveries)
                .where(*_as_read(row), d.next_attempt_at == row.next_attempt_at, live.exists())
                .values(next_attempt_at=to_utc(self.clock() + self.claim))
            )
        return claimed.rowcount == 1

    async def _release(self, row: Any) -> None:
        async with self.store.engine.begin() as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(*_as_read(row))
                .values(next_attempt_at=row.next_attempt_at)
            )

    async def _attempt(self, row: Any) -> bool | None:
        """Whether the receiver took it (the attempt recorded either way); None if it could
        not be attempted yet (its audit chain line is not there)."""
        msg_id = webhook_id(row.subscription_id, row.position)
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        self._read = None  # never reused by another attempt: an erasure may come between
        try:
            body = await self._body(row)
            if body is None:  # the audit chain has not reached the event yet: next time
                return None
            secret = await self._secret(row)
            address = await self._checked_address(row.url)
            with continued(await self._traceparent(row)):
                status_code = await self._post(row, body, secret, address)
            if not 200 <= status_code < 300:
                error = f"the receiver answered {status_code}"
        except Refused as exc:
            error = str(exc)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}"
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except Exception as exc:  # recorded and tried again; the others go on meanwhile
            log.exception("webhook %s could not be attempted", msg_id)
            error = f"not sent: {type(exc).__name__}"
        duration_ms = (time.monotonic() - started) * 1000
        await self._record(row, status_code, error, duration_ms)
        outcome = "failed" if error else "delivered"
        self.store.metrics.webhook_deliveries.labels(outcome).inc()
        if error:
            log.warning("webhook %s not delivered: %s", msg_id, error)
        return error is None

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

    async def _traceparent(self, row: Any) -> str | None:
        """The `traceparent` the event's request had, as the event recorded it (traces on)."""
        if not self.traced:
            return None
        ctx = getattr(await self._event(row.position), "ctx", None)
        found = ctx.get("traceparent") if isinstance(ctx, dict) else None
        return str(found) if found else None

    async def _event(self, position: int) -> Any:
        if self._read is not None and self._read[0] == position:
            return self._read[1]
        events = await self.store.read(position - 1, 1)
        if not events or events[0].position != position:
            raise LookupError(f"no event at position {position}")
        self._read = (position, events[0])
        return events[0]

    async def _secret(self, row: Any) -> str:
        try:
            plain = await self.store.unseal_secret(
                row.secret_kek, row.secret_sealed, secret_purpose(row.subscription_id)
            )
        except Exception as exc:  # its KEK was destroyed: the subscription must be made anew
            raise Refused(f"the subscription's secret cannot be read: {exc}"[:300]) from exc
        return plain.decode()

    async def _checked_address(self, url: str) -> str | None:
        """The address to send to: no delivery to this machine or a private network unless
        allowed (SSRF), checked at every attempt (a name may come to resolve elsewhere); the
        POST then goes to that address. None where local receivers are allowed."""
        if self.local_allowed:
            return None
        host = urlsplit(url).hostname or ""
        try:
            addresses = await self.resolve(host)
        except OSError as exc:
            raise Refused(f"{host} does not resolve: {exc}") from exc
        if not addresses or any(is_local_address(address) for address in addresses):
            raise Refused(f"{host} resolves to a local address; not sent")
        return addresses[0]

    async def _post(self, row: Any, body: str, secret: str, address: str | None) -> int:
        """The receiver's status: the body it answers is never read."""
        msg_id = webhook_id(row.subscription_id, row.position)
        now = self.clock().astimezone(UTC)
        signature = Webhook(secret).sign(msg_id, now, body)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        url = httpx.URL(row.url)
        extensions: dict[str, Any] = {}
        if address is not None:  # to the address checked, named as the receiver
            headers["host"] = url.netloc.decode("ascii")
            if url.scheme == "https":
                extensions["sni_hostname"] = url.host
            url = url.copy_with(host=address)
        request = self.client.build_request(
            "POST", url, content=body.encode(), headers=headers, extensions=extensions
        )
        async with asyncio.timeout(self.timeout):
            response = await self.client.send(request, stream=True)
            await response.aclose()
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
        later = state.get("next_attempt_at")
        async with self.store.engine.begin() as conn:
            moved = await conn.execute(
                update(webhook_deliveries)
                .where(*_as_read(row))
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
            if later is not None:  # the receiver failed: its other deliveries wait as long
                await conn.execute(
                    update(webhook_deliveries)
                    .where(
                        d.subscription_id == row.subscription_id,
                        d.status == "pending",
                        d.next_attempt_at < later,
                    )
                    .values(next_attempt_at=later)
                )


def _as_read(row: Any) -> tuple[Any, ...]:
    """Where the delivery is still as the sender read it: pending, after as many attempts."""
    d = webhook_deliveries.c
    return (
        d.subscription_id == row.subscription_id,
        d.position == row.position,
        d.status == "pending",
        d.attempts == row.attempts,
    )
