"""Review: a reader must not pass a position whose write is still open, even when that
writer's transaction id is newer than every completed one (pg_current_snapshot's xmax is
latestCompletedXid + 1, so such a writer is not in pg_snapshot_xip)."""

from __future__ import annotations

import itertools
from typing import Any

import psycopg
import pytest
from psycopg.types.composite import register_composite
from sqlalchemy import func, select, text

from shared.audit.chain import ChainProjection
from shared.audit.tables import audit_chain
from shared.domain.clock import FixedClock
from shared.domain.indexes import AcceptanceNumber
from shared.readmodel.projector import catch_up_once
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import intake_body
from tests.integration.test_global_order import context, recorder_of

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def _rows(store: ComplaintStore, conn: Any, number: str, complaint: Any) -> list[Any]:
    recorder = recorder_of(store)
    info = recorder.datastore.psycopg_type_adapters[recorder.stored_event_type_name]
    register_composite(info, conn)
    aggregate = AcceptanceNumber.reserve(number, complaint.id, complaint.accepted_at)
    stored = [store.app.mapper.to_stored_event(e) for e in aggregate.collect_events()]
    return [
        info.python_type(s.originator_id, s.originator_version, s.topic, s.state)  # type: ignore[misc]
        for s in stored
    ]


async def test_a_writer_newer_than_every_completed_transaction_is_not_passed(
    store: ComplaintStore, settings: Settings, clock: FixedClock
) -> None:
    recorder = recorder_of(store)
    chain = ChainProjection()
    first = (await store.accept(intake_body(), context(clock))).complaint
    while await catch_up_once(store, store.engine, chain):
        pass
    dsn = settings.url.set(drivername="postgresql").render_as_string(hide_password=False)
    none: list[str] = []
    with psycopg.connect(dsn) as early, psycopg.connect(dsn) as late:
        # `early` gets its transaction id first, `late` after it; `late` takes a position
        # first, `early` a later one and commits; `late` stays open.
        early.execute("SELECT pg_current_xact_id()")
        late.execute("SELECT pg_current_xact_id()")
        held = late.execute(
            recorder.append_statement,
            (_rows(store, late, "261130-000001-8", first), *[none] * 8, 0.0, None),
        ).fetchall()
        done = early.execute(
            recorder.append_statement,
            (_rows(store, early, "261130-000002-6", first), *[none] * 8, 0.0, None),
        ).fetchall()
        early.commit()
        assert int(held[0][0]) < int(done[0][0])
        while await catch_up_once(store, store.engine, chain):
            pass
        async with store.engine.connect() as conn:
            chained = list(
                (await conn.scalars(select(audit_chain.c.position).order_by("position"))).all()
            )
        late.commit()
    assert max(chained) < int(held[0][0]), (chained, held, done)  # fails: passed the open write
    while await catch_up_once(store, store.engine, chain):
        pass
    async with store.engine.connect() as conn:
        positions = list(
            (
                await conn.scalars(text("SELECT notification_id FROM complaints_events ORDER BY 1"))
            ).all()
        )
        chained = list(
            (await conn.scalars(select(audit_chain.c.position).order_by("position"))).all()
        )
    assert chained == positions
    _ = itertools


async def test_a_long_transaction_that_writes_no_event_holds_no_reader_up(
    store: ComplaintStore, settings: Settings, clock: FixedClock
) -> None:
    """An operator's session (or a report, a migration) holding a transaction id open for
    minutes: complaints accepted meanwhile still reach the chain and the read models."""
    recorder_of(store)
    chain = ChainProjection()
    dsn = settings.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as elsewhere:
        elsewhere.execute("SELECT pg_current_xact_id()")  # a transaction id, held open
        accepted = await store.accept(intake_body(), context(clock))
        while await catch_up_once(store, store.engine, chain):
            pass
        async with store.engine.connect() as conn:
            chained = (await conn.scalar(select(func.max(audit_chain.c.position)))) or 0
        elsewhere.rollback()
    assert chained >= accepted.position, (chained, accepted.position)
