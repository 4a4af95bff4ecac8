"""Major-incident detection: many complaints of one category from one area within the
policy's window (群体性投诉 risk) raise one major_incident escalation linking them.

Reads the summary table (never replays complaints). The declaration is an aggregate whose id
is derived from (category, area, window), saved with the escalation, so however many
escalation processes look, each incident is declared and escalated once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import func, select

from shared.domain.clock import Clock
from shared.domain.codes import Status
from shared.domain.context import Actor, CommandContext
from shared.logs import correlation_id, new_correlation_id
from shared.readmodel.tables import complaint_summaries
from shared.readmodel.times import to_utc
from shared.store.facade import ComplaintStore

log = logging.getLogger("complaints.incidents")

ACTOR = Actor(id="incident-watch", role="system")


def window_start(now: datetime, minutes: int) -> datetime:
    """The start of the fixed window `now` falls in (windows are aligned to the epoch)."""
    seconds = minutes * 60
    return datetime.fromtimestamp(int(now.timestamp()) // seconds * seconds, tz=UTC)


class IncidentWatch:
    def __init__(
        self, store: ComplaintStore, *, clock: Clock, interval_seconds: float = 5.0
    ) -> None:
        self.store = store
        self.clock = clock
        self.interval_seconds = interval_seconds

    async def run(self) -> None:
        while True:
            try:
                await self.watch_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("incident watch failed; retrying")
            await asyncio.sleep(self.interval_seconds)

    async def watch_once(self) -> int:
        """Declare every incident of the current window not declared yet; returns how many."""
        config = self.store.policy.document.major_incident
        now = self.clock()
        start = window_start(now, config.window_minutes)
        s = complaint_summaries.c
        async with self.store.engine.connect() as conn:
            groups = (
                await conn.execute(
                    select(s.category, s.area)
                    .where(
                        s.accepted_at >= to_utc(start),
                        s.accepted_at < to_utc(start + timedelta(minutes=config.window_minutes)),
                        s.area.is_not(None),
                        s.status.not_in([Status.REFUSED.value]),
                    )
                    .group_by(s.category, s.area)
                    .having(func.count() >= config.threshold)
                )
            ).all()
            members = {}
            for category, area in groups:
                members[(category, area)] = [
                    UUID(row.complaint_id)
                    for row in await conn.execute(
                        select(s.complaint_id)
                        .where(
                            s.category == category,
                            s.area == area,
                            s.accepted_at >= to_utc(start),
                            s.accepted_at
                            < to_utc(start + timedelta(minutes=config.window_minutes)),
                        )
                        .order_by(s.accepted_at, s.complaint_id)
                    )
                ]
        declared = 0
        for (category, area), ids in members.items():
            correlation_id.set(new_correlation_id())
            ctx = CommandContext(actor=ACTOR, service="escalation", at=now)
            if await self.store.declare_incident(category, area, start, ids, ctx):
                declared += 1
                log.warning("major incident: %d %s complaints from %s", len(ids), category, area)
        return declared
