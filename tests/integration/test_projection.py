"""Projections survive a projector killed at random moments: they equal a rebuild from scratch."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.audit.chain import ChainProjection
from shared.audit.tables import audit_chain
from shared.domain.clock import FixedClock
from shared.domain.codes import Complexity, RefusalReason
from shared.domain.context import Actor, CommandContext
from shared.domain.personal import phone_digest
from shared.readmodel.projector import (
    Projection,
    catch_up_once,
    catch_up_together,
    position_of,
    reset,
)
from shared.readmodel.summaries import SummaryProjection
from shared.readmodel.tables import (
    complaint_analysis,
    complaint_summaries,
    deadlines,
    notifications,
)
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import POLICY, intake_body

ROOT = Path(__file__).resolve().parents[2]
#: A projector process needs about this long to import and start (2 cores).
STARTUP_SECONDS = 2.0


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
            "analysis": (
                await conn.execute(
                    select(complaint_analysis).order_by(complaint_analysis.c.complaint_id)
                )
            ).all(),
            "chain": (
                await conn.execute(select(audit_chain).order_by(audit_chain.c.position))
            ).all(),
        }


async def _burst(
    store: ComplaintStore, clock: FixedClock, rng: random.Random, n: int, offset: int = 0
) -> None:
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

    await asyncio.gather(*(one(i) for i in range(offset, offset + n)))


def _projector_process(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "COMPLAINTS_DATABASE_URL": settings.database_url,
        "COMPLAINTS_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "COMPLAINTS_INDEX_KEY": settings.index_key.get_secret_value(),
        "COMPLAINTS_AUDIT_KEY_PATH": str(settings.audit_key_path),
        "COMPLAINTS_KEK_PATH": str(settings.kek_path),
        "COMPLAINTS_PROJECTOR_LEASE_SECONDS": "0.5",
        "COMPLAINTS_PROJECTOR_POLL_SECONDS": "0.02",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "shared.cli.project"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _slow_burst(store: ComplaintStore, clock: FixedClock, rng: random.Random) -> None:
    for wave in range(6):
        await _burst(store, clock, rng, 10, offset=wave * 10)
        await asyncio.sleep(rng.uniform(0.1, 0.4))


async def _until_moved(store: ComplaintStore, projections: list[Projection]) -> None:
    """Wait (polling, at most a minute) until a projection has applied something."""
    async with asyncio.timeout(60):
        while True:
            if any([await position_of(store.engine, p.name) for p in projections]):
                return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("seed", range(2))
async def test_killed_projector_equals_a_rebuild(
    settings: Settings, clock: FixedClock, seed: int
) -> None:
    """Projector processes SIGKILLed at random moments while complaints pour in."""
    rng = random.Random(seed)
    store = ComplaintStore(settings, clock=clock)
    await store.open()
    projections: list[Projection] = [SummaryProjection(store), ChainProjection()]
    try:
        writes = asyncio.create_task(_slow_burst(store, clock, rng))
        kills = 0
        while not writes.done() or kills < 3:
            process = _projector_process(settings)
            if kills == 0:  # however slow the machine is to start it, it gets somewhere first
                await _until_moved(store, projections)
            await asyncio.sleep(STARTUP_SECONDS + rng.uniform(0.0, 1.5))
            process.send_signal(signal.SIGKILL)  # wherever it is: mid-read, mid-transaction
            process.wait()
            kills += 1
        await writes
        positions = [await position_of(store.engine, p.name) for p in projections]
        assert any(positions), "the killed projectors never got anywhere"
        for projection in projections:
            while await catch_up_once(store, store.engine, projection):
                pass
            assert await position_of(store.engine, projection.name) == await store.ping()

        survived = await _contents(store.engine)
        assert len(survived["summaries"]) == 60
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


async def _all_rows(engine: AsyncEngine) -> dict[str, list[Any]]:
    """Every read model the summary projection writes, and the chain, in a stable order."""
    found = await _contents(engine)
    async with engine.connect() as conn:
        found["notifications"] = (
            await conn.execute(
                select(notifications).order_by(
                    notifications.c.complaint_id, notifications.c.notification_id
                )
            )
        ).all()
    return found


async def _summaries_of(engine: AsyncEngine, customer_id: str) -> set[str]:
    async with engine.connect() as conn:
        found = await conn.execute(
            select(complaint_summaries.c.complaint_id).where(
                complaint_summaries.c.customer_id == customer_id
            )
        )
        return {row.complaint_id for row in found}


def _check_list_columns(rows: list[Any], erased: set[str], settings: Settings) -> None:
    """What the list filters read (issue 17): digests of the numbers (none once erased), the
    acceptance number without dashes, the investigator, the next due time."""
    secret = settings.index_key.get_secret_value().encode()
    phone, service = phone_digest("13800000000", secret), phone_digest("13812341234", secret)
    for row in rows:
        r = row._mapping
        if r["complaint_id"] in erased:
            assert r["phone_digest"] is None and r["service_digest"] is None
        else:
            assert (r["phone_digest"], r["service_digest"]) == (phone, service)
        assert r["acceptance_key"] == r["acceptance_no"].replace("-", "")
        assigned = r["status"] == "investigating"
        assert (r["investigator"] is not None) == assigned
        assert (r["next_due_at"] is not None) == assigned  # refused: no limit counting


@pytest.mark.parametrize("held", [1, 2])
async def test_folding_onto_held_and_evicted_complaints_equals_a_rebuild(
    settings: Settings, clock: FixedClock, held: int
) -> None:
    """A projector that holds only one or two complaints, fed batches of three events while
    complaints pour in (each complaint's events spread over many batches, one customer
    erased half-way), folds some batches onto the complaints it holds and loads the others;
    its rows equal those of a rebuild from the first event that loads every complaint."""
    rng = random.Random(held)
    store = ComplaintStore(settings, clock=clock)
    await store.open()
    admin = CommandContext(Actor("admin-1", "admin"), "intake", clock())
    projections: list[Projection] = [SummaryProjection(store, held), ChainProjection()]

    async def follow() -> None:
        while await catch_up_together(store, store.engine, projections, batch_size=3):
            pass

    try:
        await _burst(store, clock, rng, 8)
        await follow()
        erased = await _summaries_of(store.engine, "c1")
        assert erased
        await store.erase_customer("c1", admin)
        await _burst(store, clock, rng, 8, offset=8)
        await follow()
        await _burst(store, clock, rng, 4, offset=16)
        await follow()
        assert await position_of(store.engine, "complaint_summaries") == await store.ping()
        followed = await _all_rows(store.engine)
        assert len(followed["summaries"]) == 20
        _check_list_columns(followed["summaries"], erased, settings)

        for projection in projections:
            await reset(store.engine, projection)
        loading: list[Projection] = [SummaryProjection(store, 0), ChainProjection()]
        while await catch_up_together(store, store.engine, loading):
            pass
        assert await _all_rows(store.engine) == followed
    finally:
        await store.close()
