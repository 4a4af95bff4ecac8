"""Sends progress notices and replies to customers, after their events are stored.

The complaint's own events are the outbox: `Extended` and `Replied` request a message, and the
dispatcher records the gateway's answer as `NotificationSent` or `NotificationFailed`. A crash
between the gateway's answer and that record resends with the same Idempotency-Key, so a
gateway that honours it delivers once; nothing requested is ever dropped. One dispatcher runs
at a time among the investigation processes (a lease).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from services.investigation.gateway import GatewayClient, GatewayError, Message
from shared.domain import notices
from shared.domain.clock import Clock
from shared.domain.complaint import Complaint
from shared.domain.context import Actor, CommandContext
from shared.domain.errors import DomainError
from shared.domain.personal import is_erased, text_of
from shared.http.tracing import continued
from shared.logs import correlation_id, new_correlation_id
from shared.readmodel.tables import notifications
from shared.readmodel.times import from_db
from shared.store.facade import ComplaintStore
from shared.store.lease import Lease, holder_name, run_while_leading

log = logging.getLogger("complaints.dispatcher")

ACTOR = Actor(id="notification-dispatcher", role="system")


class Dispatcher:
    def __init__(
        self,
        store: ComplaintStore,
        gateway: GatewayClient,
        *,
        clock: Clock,
        backoff_seconds: float,
        backoff_max_seconds: float,
        poll_seconds: float = 0.5,
        lease_seconds: float = 10.0,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.clock = clock
        self.backoff = timedelta(seconds=backoff_seconds)
        self.backoff_max = timedelta(seconds=backoff_max_seconds)
        self.poll_seconds = poll_seconds
        self.lease = Lease(
            store.engine, "notification-dispatcher", holder_name(self), lease_seconds
        )

    async def run(self) -> None:
        async def step() -> bool:
            await self.dispatch_once(still_leading=self.lease.acquire)
            return False

        await run_while_leading(
            self.lease, step, every=self.poll_seconds, failed="dispatch failed; retrying", log=log
        )

    async def dispatch_once(
        self,
        limit: int = 200,
        still_leading: Callable[[], Awaitable[bool]] | None = None,
    ) -> int:
        """Try every message that is due; returns how many were handed to the gateway.

        `still_leading` is asked before each message (gateway calls can be slow, and the
        lease must not run out while this dispatcher keeps sending)."""
        async with self.store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(notifications.c.complaint_id, notifications.c.notification_id)
                    .where(notifications.c.status == "pending", notifications.c.task.is_(False))
                    # Fresh messages first: ones that keep failing cannot hold them up.
                    .order_by(notifications.c.attempts, notifications.c.requested_at)
                    .limit(limit)
                )
            ).all()
        sent = 0
        for complaint_id, notification_id in rows:
            if still_leading is not None and not await still_leading():
                break
            sent += await self._attempt(UUID(complaint_id), notification_id)
        return sent

    def next_attempt_at(self, notification: dict[str, Any]) -> datetime:
        if not notification["last_failed_at"]:
            return datetime.fromisoformat(str(notification["requested_at"]))
        doublings = min(max(int(notification["attempts"]) - 1, 0), 30)
        wait = min(self.backoff * (1 << doublings), self.backoff_max)
        return datetime.fromisoformat(str(notification["last_failed_at"])) + wait

    async def _attempt(self, complaint_id: UUID, notification_id: str) -> int:
        complaint = await self.store.get(complaint_id)
        notification = complaint.notifications.get(notification_id)
        # The complaint is the truth; the table may lag behind it.
        if notification is None or notification["status"] != "pending" or notification.get("task"):
            return 0
        now = self.clock()
        if now < self.next_attempt_at(notification):
            return 0
        requested = await self.store.event_at(complaint.id, notification["requested_version"])
        # The message carries on the correlation id of the request that asked for it.
        asked_by = requested.ctx.get("correlation_id")
        token = correlation_id.set(new_correlation_id(asked_by))
        try:  # and its trace, where traces are on (the gateway is sent its `traceparent`)
            with continued(requested.ctx.get("traceparent")):
                return await self._send(complaint, notification_id, notification, requested.data)
        finally:
            correlation_id.reset(token)

    async def _send(
        self,
        complaint: Complaint,
        notification_id: str,
        notification: dict[str, Any],
        data: dict[str, Any],
    ) -> int:
        message = self._message(complaint, notification, data)
        final = False
        if is_erased(message.to):  # nobody to send it to any more: failed for good
            outcome, detail, final = False, "the customer's contact details were erased", True
        else:
            try:
                ref = await self.gateway.send(message, key=f"{complaint.id}:{notification_id}")
                outcome, detail = True, ref
            except GatewayError as exc:
                outcome, detail, final = False, str(exc), exc.permanent
                log.warning("message %s of %s not sent: %s", notification_id, complaint.id, exc)
        ctx = CommandContext(actor=ACTOR, service="investigation", at=self.clock())
        try:
            await self.store.execute(
                complaint.id,
                lambda c: c.record_notification(
                    notification_id, sent=outcome, detail=detail, ctx=ctx, final=final
                ),
                ctx=ctx,
            )
        except DomainError as exc:  # recorded meanwhile by another dispatcher
            log.info("message %s of %s: %s", notification_id, complaint.id, exc)
        if outcome:
            self.store.metrics.notifications_sent.inc()
        else:
            self.store.metrics.notifications_failed.labels("true" if final else "false").inc()
        return 1 if outcome else 0

    def _message(
        self, complaint: Complaint, notification: dict[str, Any], data: dict[str, Any]
    ) -> Message:
        text = notices.text(
            notification,
            acceptance_no=complaint.acceptance_no,
            data=data,
            tz=self.store.policy.tz,
        )
        customer = complaint.intake["customer"]
        to = text_of(customer["email"] if notification["channel"] == "email" else customer["phone"])
        return Message(notification["channel"], to, text, complaint.acceptance_no)


async def outbox_gauges(store: ComplaintStore, clock: Clock) -> Iterable[Metric]:
    """The outbox as it stands (read when `/metrics` is scraped): messages to customers
    pending and failed for good, and how long the oldest pending one has waited. Counted on
    the notifications read model (its status index); letters, staff tasks, apart."""
    n = notifications.c
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(n.status, func.count())
            .where(n.status.in_(["pending", "failed"]), n.task.is_(False))
            .group_by(n.status)
        )
        counts: dict[str, int] = {str(status): int(count) for status, count in rows}
        oldest = await conn.scalar(
            select(func.min(n.requested_at)).where(n.status == "pending", n.task.is_(False))
        )
    messages = GaugeMetricFamily(
        "complaints_notifications",
        "Messages to customers by state: pending (to be sent) or failed (given up)",
        labels=["status"],
    )
    for status in ("pending", "failed"):
        messages.add_metric([status], int(counts.get(status, 0)))
    since = from_db(oldest)
    age = max((clock() - since).total_seconds(), 0.0) if since is not None else 0.0
    waited = GaugeMetricFamily(
        "complaints_notifications_oldest_pending_seconds",
        "How long the oldest pending message to a customer has waited (0 when none)",
        value=age,
    )
    return [messages, waited]
