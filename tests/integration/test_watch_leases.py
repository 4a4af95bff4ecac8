"""Escalation's jobs (the deadline watch, the incident watch, the recalculation) are singletons
by lease: with two escalation processes on one store only one runs them; when it stops the
other takes over; a missed limit is escalated once. (The watch's correctness without the
lease, with watchers racing: test_escalation.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import select

from services.escalation.main import create_app
from services.escalation.recalculation import Recalculation
from shared.domain.clock import FixedClock
from shared.domain.context import Actor, CommandContext
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from shared.store.lease import Lease
from shared.store.tables import projection_leases
from tests.conftest import TokenFactory, intake_body
from tests.integration.conftest import Api, catch_up, serving
from tests.integration.test_metrics import scrape, value

JOBS = ("deadline-watch", "incident-watch", "calendar-recalculation")


def quick(settings: Settings, lease_seconds: float = 10.0) -> Settings:
    return settings.model_copy(
        update={"deadline_watch_seconds": 0.05, "watch_lease_seconds": lease_seconds}
    )


async def runs(esc: Api) -> float:
    return value(await scrape(esc), "complaints_deadline_watch_runs_total")


async def until(what: Callable[[], Awaitable[bool]], within: float) -> float:
    """Wait for a background job to get `what` done; how long it took (failing after
    `within` seconds)."""
    started = time.monotonic()
    while not await what():
        assert time.monotonic() - started < within, "not within the time allowed"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def holders(app: FastAPI) -> dict[str, str]:
    async with app.state.store.engine.connect() as conn:
        rows = await conn.execute(
            select(projection_leases.c.name, projection_leases.c.holder).where(
                projection_leases.c.name.in_(JOBS)
            )
        )
        return {name: holder for name, holder in rows}


async def all_held(app: FastAPI) -> bool:
    return set(await holders(app)) == set(JOBS)


async def runs_over(esc: Api, n: float) -> bool:
    return await runs(esc) > n


async def test_one_escalation_process_watches_and_the_other_takes_over_when_it_stops(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    fast = quick(settings, lease_seconds=3.0)
    first, second = create_app(fast, clock=clock), create_app(fast, clock=clock)
    async with AsyncExitStack() as running_first:
        a = await running_first.enter_async_context(serving(first, token))
        await until(lambda: runs_over(a, 0), within=5)
        await until(lambda: all_held(first), within=5)  # every job, by the first process
        taken = await holders(first)
        async with serving(second, token) as b:
            start = await runs(a)
            await until(lambda: runs_over(a, start + 10), within=10)
            assert await runs(b) == 0  # the second stood by all along
            assert await holders(second) == taken
            await running_first.aclose()  # the first stops: it releases its leases
            # The standby takes over at its next look, long before the lease would run out.
            assert await until(lambda: runs_over(b, 0), within=2.0) < 2.0

            async def all_taken_over() -> bool:
                now = await holders(second)
                return all(now[name] != taken[name] for name in JOBS)

            # The jobs that run seldom (the recalculation) look every third of the lease.
            await until(all_taken_over, within=3.0)


async def test_a_dead_holder_is_taken_over_when_its_lease_runs_out(
    settings: Settings, clock: FixedClock, token: TokenFactory, store: ComplaintStore
) -> None:
    """A holder that died never releases: its lease runs out (by the database's clock) and
    the standby takes over then, not before."""
    dead = Lease(store.engine, "deadline-watch", "a-crashed-pod", 2.0)
    assert await dead.acquire()
    taken_at = time.monotonic()
    app = create_app(quick(settings), clock=clock)
    async with serving(app, token) as esc:
        await until(lambda: runs_over(esc, 0), within=5)
        took = time.monotonic() - taken_at
    assert 2.0 - 0.1 <= took < 2.0 + 1.0, took  # the lease's time, a look (0.05 s), a margin


async def test_a_missed_limit_is_escalated_once_with_two_escalation_processes(
    settings: Settings, clock: FixedClock, token: TokenFactory
) -> None:
    fast = quick(settings)
    apps = [create_app(fast, clock=clock) for _ in range(2)]
    async with serving(apps[0], token) as a, serving(apps[1], token) as b:
        store = apps[0].state.store
        ctx = CommandContext(Actor("agent-1", "agent"), "intake", clock(), "hotline")
        body = intake_body()
        body.update(received_at=None, area=None, evidence=[])
        complaint_id = (await store.accept(body, ctx)).complaint.id
        await catch_up(store, SummaryProjection(store))
        clock.advance(timedelta(days=4))  # its reply and investigation limits have passed

        async def escalated() -> bool:
            complaint = await store.get(complaint_id)
            return all(
                complaint.deadlines[n].get("escalated_at") for n in ("reply", "investigation")
            )

        await until(escalated, within=10)
        # A few more passes of the watch, over the projected table too.
        await catch_up(store, SummaryProjection(store))
        both = [await runs(a), await runs(b)]
        await until(lambda: total_runs(a, b, sum(both) + 5), within=10)
        history = await store.history(complaint_id)
        raised = [e for e in history if e.type in ("Escalated", "SupervisorsAlerted")]
        assert len(raised) == 1  # one lapse, one escalation: never two
        counts = [await runs(a), await runs(b)]
        assert min(counts) == 0 and max(counts) > 0  # one process watched
        escalations = [
            value(await scrape(api), "complaints_escalations_raised_total") for api in (a, b)
        ]
        assert escalations[counts.index(0)] == 0
        assert sum(escalations) == len(raised)  # what the watching process counts, no more


async def total_runs(a: Api, b: Api, n: float) -> bool:
    return await runs(a) + await runs(b) > n


async def test_a_job_that_runs_seldom_keeps_its_lease_between_runs(
    store: ComplaintStore, clock: FixedClock
) -> None:
    """The recalculation runs every 10 minutes but renews its lease every third of it: the
    standby never takes over from a live holder, and takes over (and runs at once) when the
    holder stops."""
    jobs = [
        Recalculation(store, clock=clock, interval_seconds=600, lease_seconds=0.6) for _ in range(2)
    ]
    ran: list[int] = []
    for n, job in enumerate(jobs):

        async def counted(n: int = n) -> int:
            ran.append(n)
            return 0

        job.recalculate_once = counted  # type: ignore[method-assign]
    first = asyncio.create_task(jobs[0].run())
    try:
        await until(lambda: held(jobs[0]), within=5)
        second = asyncio.create_task(jobs[1].run())
        try:
            await asyncio.sleep(2.0)  # over three times the lease
            assert jobs[0].lease.held and not jobs[1].lease.held
            assert ran == [0]  # at start only: the next run is 10 minutes on
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            await until(lambda: held(jobs[1]), within=1.0)
            await until(lambda: ran_twice(ran), within=1.0)
            assert ran == [0, 1]
        finally:
            second.cancel()
            await asyncio.gather(second, return_exceptions=True)
    finally:
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)


async def held(job: Recalculation) -> bool:
    return job.lease.held


async def ran_twice(ran: list[int]) -> bool:
    return len(ran) == 2
