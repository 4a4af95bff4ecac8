"""The projection that enqueues webhook deliveries: one per (live subscription, event it asks
for), in the store's global order, so none is skipped or enqueued twice (its rows and its
position move in one transaction, as every projection's do)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.clock import Clock
from shared.readmodel.times import to_utc
from shared.store.application import StoredEvent
from shared.webhooks.subscriptions import PROJECTION, event_type, hold_position
from shared.webhooks.tables import webhook_deliveries, webhook_subscriptions


class WebhookProjection:
    name = PROJECTION
    folds = False

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def prepare(self, events: Sequence[StoredEvent]) -> Sequence[StoredEvent]:
        return events

    async def write(self, conn: AsyncConnection, prepared: Sequence[StoredEvent]) -> None:
        # The subscriptions are read once this projection's position is held
        # (`hold_position`): a subscription made meanwhile has committed by then, with an
        # `after_position` this batch's events are judged by; one deleted before the batch
        # commits gets nothing of it.
        await hold_position(conn)
        subs = webhook_subscriptions.c
        live = (
            await conn.execute(
                select(subs.subscription_id, subs.event_types, subs.after_position).where(
                    subs.deleted_at.is_(None)
                )
            )
        ).all()
        if not live:
            return
        now = to_utc(self.clock())
        rows = [
            {
                "subscription_id": sub.subscription_id,
                "position": event.position,
                "event_type": kind,
                "event_at": to_utc(event.at),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "enqueued_at": now,
            }
            for event in prepared
            for kind in [event_type(event.aggregate, event.type)]
            for sub in live
            if event.position is not None
            and event.position > sub.after_position
            and kind in sub.event_types
        ]
        if rows:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            # A delivery enqueued already (the position moved back by hand) is left as it is.
            await conn.execute(insert(webhook_deliveries).on_conflict_do_nothing(), rows)

    async def reset(self, conn: AsyncConnection) -> None:
        """Nothing to delete: deliveries are a record of what was sent, not a read model. A
        projection moved back enqueues nothing twice."""
