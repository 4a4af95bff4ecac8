"""Global order without a lock (PostgreSQL): writers commit in any order, and no reader — the
projections, the audit chain — ever passes an event that commits later, skips or repeats one.

On SQLite one writer at a time commits, in the order of positions: nothing to test there."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg.types.composite import register_composite
from sqlalchemy import select, text

from shared.audit.chain import ChainProjection
from shared.audit.tables import audit_chain
from shared.domain.clock import FixedClock
from shared.domain.context import Actor, CommandContext
from shared.domain.indexes import AcceptanceNumber
from shared.readmodel.projector import Projection, catch_up_once, position_of
from shared.readmodel.summaries import SummaryProjection
from shared.readmodel.tables import complaint_summaries
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from shared.store.postgres import OrderedRecorder
from tests.conftest import intake_body

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def context(clock: FixedClock, n: int = 0) -> CommandContext:
    return CommandContext(
        actor=Actor(f"agent-{n}", "agent"), service="intake", at=clock(), request_id=f"req-{n}"
    )


def recorder_of(store: ComplaintStore) -> OrderedRecorder:
    recorder = store.app.recorder
    assert isinstance(recorder, OrderedRecorder)
    recorder.read_wait = recorder.head_wait = 0.05  # the held writes below stay open longer
    return recorder


@contextmanager
def held_write(
    settings: Settings, store: ComplaintStore, number: str, complaint: Any
) -> Iterator[list[int]]:
    """A write that takes its positions now and commits when the block ends, on a connection
    of its own, as the recorder writes (`complaints_events_append`)."""
    recorder = recorder_of(store)
    aggregate = AcceptanceNumber.reserve(number, complaint.id, complaint.accepted_at)
    stored = [store.app.mapper.to_stored_event(e) for e in aggregate.collect_events()]
    dsn = settings.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        info = recorder.datastore.psycopg_type_adapters[recorder.stored_event_type_name]
        register_composite(info, conn)
        rows = [
            info.python_type(s.originator_id, s.originator_version, s.topic, s.state)  # type: ignore[misc]
            for s in stored
        ]
        with conn.transaction():
            no_keys: list[str] = []  # an index's events hold no personal data (nor an answer)
            cursor = conn.execute(recorder.append_statement, (rows, *[no_keys] * 8, 0.0, None))
            yield [int(r[0]) for r in cursor.fetchall()]
            # committed here


async def _chain(store: ComplaintStore) -> list[int]:
    """The chain's positions, in order; each link names the one before it as its previous
    hash, so no position was chained later than one after it."""
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(audit_chain).order_by(audit_chain.c.position))).all()
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.hash
    return [row.position for row in rows]


async def _all_positions(store: ComplaintStore) -> list[int]:
    async with store.engine.connect() as conn:
        result = await conn.scalars(
            text("SELECT notification_id FROM complaints_events ORDER BY notification_id")
        )
        return list(result.all())


async def test_a_reader_stops_before_a_position_whose_write_is_still_open(
    store: ComplaintStore, settings: Settings, clock: FixedClock
) -> None:
    chain = ChainProjection()
    first = (await store.accept(intake_body(), context(clock))).complaint
    while await catch_up_once(store, store.engine, chain):
        pass  # a reader that has run before: it knows what has committed
    with held_write(settings, store, "261130-000001-8", first) as late:
        # Writers that took their positions after it commit first.
        for n in range(1, 4):
            await store.accept(intake_body(customer={"id": f"c-{n}"}), context(clock, n))
        head_meanwhile = await store.ping()
        while await catch_up_once(store, store.engine, chain):
            pass
        chained = await _chain(store)
        assert chained and max(chained) < late[0]  # stopped before the open write
        assert head_meanwhile < late[0]  # nor does the store's head pass it
        later = [p for p in await _all_positions(store) if p > late[-1]]
        assert len(later) == 9  # committed, and waiting behind it
    while await catch_up_once(store, store.engine, chain):
        pass
    assert await _chain(store) == await _all_positions(store)  # each once, in order
    assert await store.ping() == max(await _all_positions(store))


async def test_many_writers_committing_out_of_order_are_all_projected_once(
    store: ComplaintStore, settings: Settings, clock: FixedClock
) -> None:
    """Acceptances from many threads at once, with writes held open across others' commits,
    while the projections run: every projection and the chain end with every event, once."""
    projections: list[Projection] = [SummaryProjection(store), ChainProjection()]
    done = asyncio.Event()
    rng = random.Random(16)

    async def project() -> None:
        while not done.is_set():
            for projection in projections:
                await catch_up_once(store, store.engine, projection, batch_size=7)
            await asyncio.sleep(0)

    async def accept(n: int) -> Any:
        await asyncio.sleep(rng.random() / 50)
        body = intake_body(customer={"id": f"cust-{n % 7}"}, service_number=f"1380000{n:04d}")
        return (await store.accept(body, context(clock, n))).complaint

    runner = asyncio.create_task(project())
    accepted = await asyncio.gather(*(accept(n) for n in range(12)))
    for round_ in range(3):
        number = f"26113{round_}-00000{round_}-0"
        with held_write(settings, store, number, accepted[round_]) as late:
            more = await asyncio.gather(*(accept(100 * (round_ + 1) + n) for n in range(8)))
            accepted.extend(more)
            await asyncio.sleep(0.01)  # the projections run while it is open
            for projection in projections:
                await catch_up_once(store, store.engine, projection)
                assert await position_of(store.engine, projection.name) < late[0]
    await asyncio.gather(*(accept(500 + n) for n in range(12)))
    done.set()
    await runner
    for projection in projections:
        while await catch_up_once(store, store.engine, projection):
            pass

    positions = await _all_positions(store)
    chained = await _chain(store)
    assert chained == positions  # no event skipped, none twice, strictly increasing
    assert len(set(chained)) == len(chained) == len(positions)
    async with store.engine.connect() as conn:
        summarised = await conn.scalar(select(text("count(*)")).select_from(complaint_summaries))
    assert summarised == 12 + 3 * 8 + 12
    for projection in projections:
        assert await position_of(store.engine, projection.name) == positions[-1]
