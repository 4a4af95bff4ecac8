"""Projections survive a projector killed at random moments: they equal a rebuild from scratch."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.audit.chain import ChainProjection
from shared.domain.clock import FixedClock
from shared.domain.codes import Complexity, RefusalReason
from shared.domain.context import Actor, CommandContext
from shared.readmodel.projector import Projection, catch_up_once, position_of, reset
from shared.readmodel.summaries import SummaryProjection
from shared.readmodel.tables import audit_chain, complaint_summaries, deadlines
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import POLICY, intake_body


async def _contents(engine: AsyncEngine) -> dict[str, list[Any]]:
    async with engine.connect() as conn:
        return {
            "summaries": (
                await conn.execute(
                    select(complaint_summaries).order_by(complaint_summaries.c.complaint_id)
                )
            ).all(),
            "deadlines": (
                await conn.execute(
                    select(deadlines).order_by(deadlines.c.complaint_id, deadlines.c.name)
                )
            ).all(),
            "chain": (
                await conn.execute(select(audit_chain).order_by(audit_chain.c.position))
            ).all(),
        }


async def _burst(store: ComplaintStore, clock: FixedClock, rng: random.Random, n: int) -> None:
    agent = CommandContext(Actor("agent-1", "agent"), "intake", clock(), "hotline")
    sup = CommandContext(Actor("sup-1", "supervisor"), "investigation", clock())

    async def one(i: int) -> None:
        body = intake_body(customer={"id": f"c{i % 5}", "name": "n", "phone": "13800000000"})
        body.update(received_at=None, area=None, evidence=[])
        written = await store.accept(body, replace(agent, request_id=f"a{i}"))
        complaint_id = written.complaint.id
        if rng.random() < 0.5:
            await store.execute(
                complaint_id,
                lambda c: c.assign("net", f"inv-{i}", Complexity.SIMPLE, POLICY, sup),
                ctx=replace(sup, request_id=f"s{i}"),
            )
        else:
            await store.execute(
                complaint_id,
                lambda c: c.refuse(RefusalReason.OUT_OF_SCOPE, "x", "y", sup),
                ctx=replace(sup, request_id=f"r{i}"),
            )

    await asyncio.gather(*(one(i) for i in range(n)))


async def _project_forever(store: ComplaintStore, projections: list[Projection]) -> None:
    while True:
        for projection in projections:
            await catch_up_once(store, store.engine, projection, batch_size=7)
        await asyncio.sleep(0)


@pytest.mark.parametrize("seed", range(4))
async def test_killed_projector_equals_a_rebuild(
    settings: Settings, clock: FixedClock, seed: int
) -> None:
    rng = random.Random(seed)
    store = ComplaintStore(settings, clock=clock)
    await store.open()
    projections: list[Projection] = [SummaryProjection(store), ChainProjection()]
    try:
        writes = asyncio.create_task(_burst(store, clock, rng, 40))
        kills = 0
        while not writes.done():
            projector = asyncio.create_task(_project_forever(store, projections))
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            projector.cancel()  # killed wherever it is: mid-read, mid-transaction
            await asyncio.gather(projector, return_exceptions=True)
            kills += 1
        await writes
        assert kills > 1
        head = await store.ping()
        for projection in projections:
            while await catch_up_once(store, store.engine, projection):
                pass
            assert await position_of(store.engine, projection.name) == head

        survived = await _contents(store.engine)
        assert len(survived["summaries"]) == 40
        events = await store.read(0, 10_000)
        # Every event chained once, in order (PostgreSQL positions may have gaps).
        assert [r.position for r in survived["chain"]] == [e.position for e in events]
        for projection in projections:
            await reset(store.engine, projection)
            while await catch_up_once(store, store.engine, projection):
                pass
        assert await _contents(store.engine) == survived
    finally:
        await store.close()


async def test_two_projectors_at_once_apply_each_event_once(
    settings: Settings, clock: FixedClock
) -> None:
    """Even if two processes both thought they led, positions are compared-and-set."""
    stores = [ComplaintStore(settings, clock=clock) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        await _burst(stores[0], clock, random.Random(7), 25)
        runs = [
            asyncio.create_task(_catch_up_all(s, [SummaryProjection(s), ChainProjection()]))
            for s in stores
        ]
        await asyncio.gather(*runs)
        contents = await _contents(stores[0].engine)
        events = await stores[0].read(0, 10_000)
        assert [r.position for r in contents["chain"]] == [e.position for e in events]
        assert len(contents["summaries"]) == 25
    finally:
        for s in stores:
            await s.close()


async def _catch_up_all(store: ComplaintStore, projections: list[Projection]) -> None:
    head = await store.ping()
    for projection in projections:
        while await position_of(store.engine, projection.name) < head:
            await catch_up_once(store, store.engine, projection, batch_size=5)


async def test_the_rebuild_command_replays_from_the_first_event(
    settings: Settings, clock: FixedClock
) -> None:
    from shared.cli.rebuild import rebuild

    store = ComplaintStore(settings, clock=clock)
    await store.open()
    try:
        await _burst(store, clock, random.Random(3), 12)
        projections: list[Projection] = [SummaryProjection(store), ChainProjection()]
        await _catch_up_all(store, projections)
        before = await _contents(store.engine)
        async with store.engine.begin() as conn:  # a damaged read model
            await conn.execute(complaint_summaries.delete())
        await rebuild(settings, [], progress=False)
        assert await _contents(store.engine) == before
    finally:
        await store.close()
