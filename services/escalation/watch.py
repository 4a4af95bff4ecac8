"""The deadline watch: a limit that passes escalates its complaint by itself, within seconds,
whether or not any request is being served.

It reads due deadlines from the deadline table (never replaying complaints to find them) and
asks each complaint to escalate for that deadline. One escalation process at a time watches
(the lease `deadline-watch`): the work is done once, not once per replica. Correctness does
not rest on the lease: the complaint refuses a second escalation for the same deadline, and
optimistic concurrency settles races, so two watchers (two briefly overlapping holders, or
`watch_once` called from anywhere) still escalate each missed deadline exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from uuid import UUID

from sqlalchemy import select

from shared.domain.clock import Clock
from shared.domain.complaint import Complaint
from shared.domain.context import Actor, CommandContext
from shared.domain.errors import DomainError
from shared.domain.lifecycle import FINAL
from shared.logs import correlation_id, new_correlation_id
from shared.readmodel.summaries import still_counting
from shared.readmodel.tables import complaint_summaries, deadlines
from shared.readmodel.times import to_utc
from shared.store.facade import ComplaintStore
from shared.store.lease import Lease, holder_name, run_while_leading

log = logging.getLogger("complaints.watch")

ACTOR = Actor(id="deadline-watch", role="system")


class DeadlineWatch:
    def __init__(
        self,
        store: ComplaintStore,
        *,
        clock: Clock,
        interval_seconds: float = 1.0,
        batch: int = 500,
        concurrency: int = 8,
        lease_seconds: float = 10.0,
    ) -> None:
        self.store = store
        self.lease = Lease(store.engine, "deadline-watch", holder_name(self), lease_seconds)
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.batch = batch
        self._gate = asyncio.Semaphore(concurrency)
        #: Handled lately: the table may not show it yet (the projection follows).
        self._recent: dict[tuple[str, str], float] = {}

    async def run(self) -> None:
        """Watch while this process holds the lease; a full batch is followed at once by the
        next."""

        async def step() -> bool:
            return await self.watch_once() >= self.batch

        await run_while_leading(
            self.lease,
            step,
            every=self.interval_seconds,
            failed="deadline watch failed; retrying",
            log=log,
        )

    async def watch_once(self) -> int:
        """Escalate for every deadline that has passed unmet; returns how many were tried."""
        now = self.clock()
        async with self.store.engine.connect() as conn:
            due = (
                await conn.execute(
                    select(deadlines.c.complaint_id, deadlines.c.key)
                    .join(
                        complaint_summaries,
                        complaint_summaries.c.complaint_id == deadlines.c.complaint_id,
                    )
                    .where(
                        *still_counting(),
                        deadlines.c.escalated_at.is_(None),
                        deadlines.c.due_at < to_utc(now),
                        complaint_summaries.c.status.not_in([s.value for s in FINAL]),
                    )
                    .order_by(deadlines.c.due_at)
                    .limit(self.batch)
                )
            ).all()
        fresh = time.monotonic() - 30
        self._recent = {k: t for k, t in self._recent.items() if t > fresh}
        todo = [(c, n) for c, n in due if (c, n) not in self._recent]
        by_complaint: dict[str, list[str]] = {}
        for complaint_id, name in todo:  # in the order they fell due
            by_complaint.setdefault(complaint_id, []).append(name)
        await asyncio.gather(*(self._escalate(UUID(c), n) for c, n in by_complaint.items()))
        metrics = self.store.metrics
        metrics.watch_runs.inc()
        metrics.limits_missed.inc(len(todo))
        return len(todo)

    async def _escalate(self, complaint_id: UUID, names: list[str]) -> None:
        """Escalate for each of the complaint's missed limits, one after the other, in one
        command: after an outage, when thousands fall due at once, a complaint is loaded and
        saved once, not once per limit. Each limit still records its own escalation."""
        async with self._gate:
            correlation_id.set(new_correlation_id())  # one per command, in its logs and events
            ctx = CommandContext(actor=ACTOR, service="escalation", at=self.clock())
            escalated: list[str] = []

            def escalate(complaint: Complaint) -> None:
                escalated.clear()  # a retried command starts again from a fresh load
                for name in names:
                    try:
                        complaint.escalate_missed(name, self.store.policy, ctx)
                        escalated.append(name)
                    except DomainError as exc:  # met meanwhile, or another watcher was first
                        log.debug("complaint %s, %s: %s", complaint_id, name, exc)

            try:
                await self.store.execute(complaint_id, escalate, ctx=ctx)
            except DomainError as exc:  # e.g. archived meanwhile: nothing was saved
                log.debug("complaint %s, %s: %s", complaint_id, names, exc)
                escalated.clear()
            for name in escalated:
                log.info("complaint %s escalated: %s limit missed", complaint_id, name)
            self.store.metrics.escalations.inc(len(escalated))
            handled = time.monotonic()
            for name in names:
                self._recent[(str(complaint_id), name)] = handled
