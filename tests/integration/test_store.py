"""The event store facade: snapshots, point-in-time reads, lookups."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID

import anyio
import anyio.lowlevel
import pytest

from shared.domain.clock import FixedClock
from shared.domain.codes import Complexity, Status
from shared.domain.complaint import Complaint
from shared.domain.context import Actor, CommandContext
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import POLICY, intake_body

T = TypeVar("T")


async def test_snapshots_are_taken_and_reads_match_a_full_replay(
    settings: Settings, clock: FixedClock
) -> None:
    store = ComplaintStore(settings.model_copy(update={"snapshot_interval": 3}), clock=clock)
    await store.open()
    try:
        ctx = CommandContext(Actor("sup-1", "supervisor"), "intake", clock(), "hotline")
        body = intake_body()
        body["received_at"] = None
        body["area"] = None
        body["evidence"] = []
        complaint_id = (await store.accept(body, ctx)).complaint.id
        await store.execute(
            complaint_id,
            lambda c: c.assign("net", "inv-1", Complexity.SIMPLE, POLICY, ctx),
            ctx=ctx,
        )
        for n in range(5):
            clock.advance(timedelta(minutes=1))
            await store.execute(
                complaint_id, lambda c, n=n: c.add_evidence("system_log", f"L{n}", "", ctx), ctx=ctx
            )
        await store.execute(complaint_id, lambda c: c.pause_clock("waiting", ctx), ctx=ctx)

        snapshots = list(store.app.snapshots.get(complaint_id))  # type: ignore[union-attr]
        assert [s.originator_version for s in snapshots] == [3, 6]

        from_snapshot = await store.get(complaint_id)
        replayed: Complaint | None = None
        for event in store.app.events.get(complaint_id):
            replayed = event.mutate(replayed)
        assert replayed is not None
        assert from_snapshot.version == replayed.version == 8
        assert from_snapshot.status == replayed.status == Status.INVESTIGATING
        assert from_snapshot.evidence == replayed.evidence
        assert from_snapshot.deadlines == replayed.deadlines
        assert from_snapshot.paused_at == replayed.paused_at
        # A command still works on a complaint rebuilt from a snapshot.
        await store.execute(complaint_id, lambda c: c.resume_clock(ctx), ctx=ctx)
        assert (await store.get(complaint_id)).paused_at is None
    finally:
        await store.close()


async def test_find_by_acceptance_number(store: ComplaintStore, clock: FixedClock) -> None:
    ctx = CommandContext(Actor("agent-1", "agent"), "intake", clock(), "hotline")
    written = await store.accept(intake_body(), ctx)
    found = await store.find_by_acceptance_no(written.complaint.acceptance_no)
    assert found.id == written.complaint.id
    assert isinstance(found.id, UUID)


async def test_every_connection_commits_durably(
    settings: Settings, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit acknowledged is on disk: SQLite with synchronous=FULL (WAL mode), PostgreSQL
    with synchronous_commit on, for the event store's connections and the read models' —
    even where SQLite was built to default to NORMAL (simulated here)."""
    connect = sqlite3.connect

    def lax_build(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    monkeypatch.setattr(sqlite3, "connect", lax_build)
    sqlite = not settings.is_postgres
    question, durable = ("PRAGMA synchronous", 2) if sqlite else ("SHOW synchronous_commit", "on")
    store = ComplaintStore(settings, clock=clock)
    await store.open()
    try:

        def event_store_answer() -> object:
            datastore = store._app.recorder.datastore  # type: ignore[union-attr]
            with datastore.transaction(commit=False) as cursor:
                cursor.execute(question)
                row = cursor.fetchone()
            return row[0] if not isinstance(row, dict) else next(iter(row.values()))

        assert await store._run(event_store_answer) == durable
        async with store.engine.connect() as conn:
            assert (await conn.exec_driver_sql(question)).scalar() == durable
    finally:
        await store.close()


def close_is_waiting(store: ComplaintStore) -> bool:
    """Whether a `close` under way waits for a thread's token (of the calls or of the probe)."""
    limiters = [v for v in vars(store).values() if isinstance(v, anyio.CapacityLimiter)]
    return any(limiter.statistics().tasks_waiting for limiter in limiters)


class Held:
    """A call into the store held in its worker thread until released, and the order in which
    it ended and the store's connections were closed."""

    def __init__(self) -> None:
        self.running, self.released = threading.Event(), threading.Event()
        self.order: list[str] = []

    def hold(self, call: Callable[..., T]) -> Callable[..., T]:
        def held(*args: Any, **kwargs: Any) -> T:
            self.running.set()
            self.released.wait(timeout=30)
            try:
                return call(*args, **kwargs)  # on the store's connections
            finally:
                self.order.append("call done")

        return held

    def closing(self, close: Callable[[], None]) -> Callable[[], None]:
        def closed() -> None:
            self.order.append("connections closed")
            close()

        return closed

    async def release_once_close_waits(self, store: ComplaintStore) -> None:
        """Start closing the store; release the call once close has either closed the
        connections or is waiting for the call's thread; close must then finish."""
        closer = asyncio.ensure_future(store.close())
        while not closer.done() and not close_is_waiting(store):
            await anyio.lowlevel.checkpoint()
        self.released.set()
        await closer


async def test_closing_waits_for_a_call_still_running_in_its_thread(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ComplaintStore(settings)
    await store.open()
    app, held = store.app, Held()
    monkeypatch.setattr(app, "close", held.closing(app.close))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(store._run, held.hold(app.ping))
        await anyio.to_thread.run_sync(held.running.wait)
        await held.release_once_close_waits(store)
    assert held.order == ["call done", "connections closed"]


async def test_closing_waits_for_a_read_whose_caller_was_cancelled(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A projector stopped at shutdown while its read runs on in a worker thread (as a request
    gone, a watch stopped): closing the store waits for the read, or the process would crash
    closing a SQLite connection under the query (seen in a full test run)."""
    store = ComplaintStore(settings)
    await store.open()
    app, held = store.app, Held()
    recorder = app.recorder
    monkeypatch.setattr(recorder, "select_notifications", held.hold(recorder.select_notifications))
    monkeypatch.setattr(app, "close", held.closing(app.close))
    reader = asyncio.ensure_future(store.read(0, 10))
    await anyio.to_thread.run_sync(held.running.wait)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await held.release_once_close_waits(store)
    assert held.order == ["call done", "connections closed"]


async def test_closing_waits_for_the_probe_of_a_ping_given_up(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A health check that gave up leaves its probe running (it runs beside the calls):
    closing the store waits for it too."""
    store = ComplaintStore(settings)
    await store.open()
    app, held = store.app, Held()
    monkeypatch.setattr(app, "ping", held.hold(app.ping))
    monkeypatch.setattr(app, "close", held.closing(app.close))
    probe = asyncio.ensure_future(store.ping(within=60))
    await anyio.to_thread.run_sync(held.running.wait)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    await held.release_once_close_waits(store)
    assert held.order == ["call done", "connections closed"]


async def test_no_call_starts_once_the_store_is_closing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that waited for its turn while the store closed is refused, not run on closed
    connections."""
    store = ComplaintStore(settings.model_copy(update={"store_threads": 1}))
    await store.open()
    app, held = store.app, Held()
    monkeypatch.setattr(app, "close", held.closing(app.close))
    first = asyncio.ensure_future(store._run(held.hold(app.ping)))
    await anyio.to_thread.run_sync(held.running.wait)
    queued = asyncio.ensure_future(store.ping())  # waits for the one thread
    while store._limiter.statistics().tasks_waiting == 0:
        await anyio.lowlevel.checkpoint()
    closer = asyncio.ensure_future(store.close())
    while store._limiter.statistics().tasks_waiting < 2:  # the queued call, then close
        await anyio.lowlevel.checkpoint()
    held.released.set()
    await closer
    await first
    with pytest.raises(RuntimeError, match="closed"):
        await queued
    assert held.order == ["call done", "connections closed"]


async def test_personal_data_recorded_with_the_acceptance_is_sealed_not_erased(
    store: ComplaintStore, clock: FixedClock
) -> None:
    """A command saved with the acceptance (`then`) seals its personal data with the key the
    acceptance binds, though that binding is not committed yet: the evidence reads back as
    written, not as erased."""
    ctx = CommandContext(Actor("agent-1", "agent"), "intake", clock(), "hotline")
    body = intake_body()
    body["evidence"] = []
    investigator = CommandContext(Actor("inv-1", "investigator"), "investigation", clock())

    def investigated(c: Complaint) -> None:
        c.assign("net", "inv-1", Complexity.SIMPLE, POLICY, ctx)
        c.add_evidence("system_log", "L1", "Drops every evening at 8", investigator)

    written = await store.accept(body, ctx, then=investigated)
    complaint = await store.get(written.complaint.id)
    (evidence,) = complaint.evidence
    assert evidence["summary"].open() == "Drops every evening at 8"
