"""Calendar honesty: limits counted on an estimated holiday schedule are counted again once the
policy in force brings the official one.

The holidays package knows each year's official schedule (the State Council's notice, with
its adjusted working weekends, 调休) only once it is published; for later years it estimates.
A deadline counted in working days over such a year says `calendar: "estimated"`. When a new
policy version brings that year's schedule (its `extra_holidays`, `extra_workdays` and
`official_years`), this job asks each open complaint with such a running limit to count it
again: the complaint records `DeadlinesRecalculated` with the old and new due times and both
policy versions (and tells the customer if the reply moved later). One escalation process at
a time runs it (the lease `calendar-recalculation`): when it takes the lease (at start, or
taking over) and then every `recalculation_seconds`. Optimistic concurrency settles two
processes doing it at once; a complaint with nothing to change records nothing.
"""

from __future__ import annotations

import logging
from uuid import UUID

from sqlalchemy import select

from shared.domain.clock import Clock
from shared.domain.context import Actor, CommandContext
from shared.domain.errors import DomainError, InvalidCommand
from shared.domain.lifecycle import FINAL
from shared.domain.policy import Calendar
from shared.logs import correlation_id, new_correlation_id
from shared.readmodel.summaries import still_counting
from shared.readmodel.tables import complaint_summaries, deadlines
from shared.store.facade import ComplaintStore
from shared.store.lease import Lease, holder_name, run_while_leading

log = logging.getLogger("complaints.recalculation")

ACTOR = Actor(id="calendar-recalculation", role="system")


class Recalculation:
    def __init__(
        self,
        store: ComplaintStore,
        *,
        clock: Clock,
        interval_seconds: float,
        batch: int = 200,
        lease_seconds: float = 10.0,
    ) -> None:
        self.store = store
        self.lease = Lease(store.engine, "calendar-recalculation", holder_name(self), lease_seconds)
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.batch = batch
        #: Complaints that had nothing to count again under this policy (a year it still
        #: estimates): not asked again by this process.
        self._unchanged: set[str] = set()

    async def run(self) -> None:
        """Recalculate while this process holds the lease; a full batch is followed at once
        by the next."""

        async def step() -> bool:
            return await self.recalculate_once() == self.batch

        await run_while_leading(
            self.lease,
            step,
            every=self.interval_seconds,
            failed="recalculation failed; retrying",
            log=log,
        )

    async def recalculate_once(self) -> int:
        """Ask each open complaint with a running estimated limit of another policy version
        to count it again; returns how many complaints were asked."""
        policy = self.store.policy
        d = deadlines.c
        query = (
            select(d.complaint_id)
            .join(complaint_summaries, complaint_summaries.c.complaint_id == d.complaint_id)
            .where(
                d.calendar == Calendar.ESTIMATED.value,
                d.policy_version != policy.version,
                *still_counting(),
                complaint_summaries.c.status.not_in([s.value for s in FINAL]),
            )
            .distinct()
            .order_by(d.complaint_id)
            .limit(self.batch + len(self._unchanged))
        )
        async with self.store.engine.connect() as conn:
            found = [str(i) for i in (await conn.scalars(query)).all()]
        todo = [i for i in found if i not in self._unchanged][: self.batch]
        for complaint_id in todo:
            await self._recalculate(UUID(complaint_id))
        return len(todo)

    async def _recalculate(self, complaint_id: UUID) -> None:
        policy = self.store.policy
        correlation_id.set(new_correlation_id())  # one per command, in its logs and events
        ctx = CommandContext(actor=ACTOR, service="escalation", at=self.clock())
        try:
            await self.store.execute(
                complaint_id, lambda c: c.recalculate_deadlines(policy, ctx), ctx=ctx
            )
            log.info("complaint %s: limits counted again under %s", complaint_id, policy.version)
        except InvalidCommand as exc:  # nothing this policy changes: not asked again
            log.debug("complaint %s: %s", complaint_id, exc)
            self._unchanged.add(str(complaint_id))
        except DomainError as exc:  # a race, or it closed meanwhile: the next run looks again
            log.info("complaint %s: %s", complaint_id, exc)
