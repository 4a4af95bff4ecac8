"""Major incidents (群体性投诉): many complaints of one category from one area within the
policy's window. The watch finds them in the read model and the store declares or grows them
(`shared.domain.indexes`); the reads list them and show one with its complaints.

The window slides: on each run at `now` the watch looks at the complaints accepted in the
window before `now`. It reads the read model only (never replays), so it may be a little
behind: the incident's aggregates decide. One escalation process at a time watches (the lease
`incident-watch`); optimistic concurrency keeps two overlapping watchers correct.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.domain.clock import Clock
from shared.domain.codes import Status
from shared.domain.context import Actor, CommandContext
from shared.logs import correlation_id, new_correlation_id
from shared.readmodel.cursor import decode_cursor, encode_cursor
from shared.readmodel.tables import complaint_summaries, major_incidents
from shared.readmodel.times import from_db, to_utc
from shared.store.facade import ComplaintStore
from shared.store.lease import Lease, holder_name, run_while_leading

log = logging.getLogger("complaints.incidents")

ACTOR = Actor(id="incident-watch", role="system")


class IncidentWatch:
    def __init__(
        self,
        store: ComplaintStore,
        *,
        clock: Clock,
        interval_seconds: float = 5.0,
        lease_seconds: float = 10.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.lease = Lease(store.engine, "incident-watch", holder_name(self), lease_seconds)

    async def run(self) -> None:
        """Watch while this process holds the lease."""

        async def step() -> bool:
            await self.watch_once()
            return False

        await run_while_leading(
            self.lease,
            step,
            every=self.interval_seconds,
            failed="incident watch failed; retrying",
            log=log,
        )

    async def watch_once(self) -> int:
        """Declare each burst of the last window as an incident, and let complaints join the
        incident open when they were accepted; returns how many incidents were declared or
        grew."""
        now = self.clock()
        groups = await self._candidates(now)
        changed = 0
        for (category, area), ids in groups.items():
            correlation_id.set(new_correlation_id())
            ctx = CommandContext(actor=ACTOR, service="escalation", at=now)
            incident = await self.store.gather_incident(category, area, ids, ctx)
            if incident is not None:
                changed += 1
                log.warning(
                    "major incident %s (no. %d of %s complaints from %s): %d complaints",
                    incident.id,
                    incident.number,
                    category,
                    area,
                    len(incident.members),
                )
        return changed

    async def _candidates(self, now: datetime) -> dict[tuple[str, str], list[UUID]]:
        """For each category and area with something to do, its complaints in no incident yet
        since the earlier of: the window before `now` (a burst), and the first complaint of
        an incident open within that window (complaints accepted while it was open join it,
        also when the watch or the read model was behind)."""
        config = self.store.policy.document.major_incident
        since = to_utc(now - timedelta(minutes=config.window_minutes))
        s, m = complaint_summaries.c, major_incidents.c
        unlinked = (s.incident_id.is_(None), s.area.is_not(None), s.accepted_at <= to_utc(now))
        bursts = (
            select(s.category, s.area)
            .where(*unlinked, s.accepted_at > since, s.status != Status.REFUSED.value)
            .group_by(s.category, s.area)
            .having(func.count() >= config.threshold)
        )
        joining = select(m.category, m.area, m.first_member_at).where(
            m.closes_at >= since,
            exists().where(
                *unlinked,
                s.category == m.category,
                s.area == m.area,
                s.accepted_at >= m.first_member_at,
                s.accepted_at <= m.closes_at,
            ),
        )
        async with self.store.engine.connect() as conn:
            starts = {(c, a): since for c, a in await conn.execute(bursts)}
            for category, area, first_member_at in await conn.execute(joining):
                first = from_db(first_member_at)
                assert first is not None  # a declared incident has members
                starts[(category, area)] = min(starts.get((category, area), first), first)
            if not starts:
                return {}
            rows = await conn.execute(
                select(s.category, s.area, s.complaint_id)
                .where(
                    *unlinked,
                    or_(
                        *(
                            and_(s.category == c, s.area == a, s.accepted_at >= start)
                            for (c, a), start in starts.items()
                        )
                    ),
                )
                .order_by(s.accepted_at, s.complaint_id)
            )
            groups: dict[tuple[str, str], list[UUID]] = {}
            for category, area, complaint_id in rows:
                groups.setdefault((category, area), []).append(UUID(complaint_id))
        return groups


# ---------------------------------------------------------------------------------- reads
async def list_incidents(
    engine: AsyncEngine,
    *,
    category: str | None,
    area: str | None,
    is_open: bool | None,
    now: datetime,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of incident rows, newest first, and the cursor of the next page (None at the
    end). Raises InvalidCursor for a cursor this API did not issue."""
    m = major_incidents.c
    query = select(major_incidents)
    if category is not None:
        query = query.where(m.category == category)
    if area is not None:
        query = query.where(m.area == area)
    if is_open is not None:  # open until one window after its last member (MajorIncident)
        query = query.where(m.closes_at >= to_utc(now) if is_open else m.closes_at < to_utc(now))
    if cursor:
        place = decode_cursor(cursor)
        at, incident_id = place.at, place.row_id
        query = query.where(
            or_(m.declared_at < at, and_(m.declared_at == at, m.incident_id < incident_id))
        )
    query = query.order_by(m.declared_at.desc(), m.incident_id.desc()).limit(limit + 1)
    async with engine.connect() as conn:
        rows: list[dict[str, Any]] = [
            {k: from_db(v) if isinstance(v, datetime) else v for k, v in row.items()}
            for row in (await conn.execute(query)).mappings()
        ]
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1]["declared_at"], page[-1]["incident_id"])
        if len(rows) > limit
        else None
    )
    return page, next_cursor


async def member_states(engine: AsyncEngine, ids: list[UUID]) -> dict[UUID, tuple[str, str]]:
    """The current status and level of each complaint the read model has seen."""
    s = complaint_summaries.c
    if not ids:
        return {}
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(s.complaint_id, s.status, s.level).where(
                s.complaint_id.in_([str(i) for i in ids])
            )
        )
        return {UUID(row.complaint_id): (row.status, row.level) for row in rows}
