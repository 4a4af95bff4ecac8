"""Projections follow the event store in global order into SQL tables.

Each batch is written with the projection's new position in one transaction, and the position
is compared-and-set: after a crash a projection resumes where it stopped, and every event is
applied exactly once. One process at a time runs the projections (a lease); on PostgreSQL it
wakes on LISTEN/NOTIFY, on SQLite it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.readmodel.tables import projection_tracking
from shared.store.application import StoredEvent
from shared.store.facade import ComplaintStore
from shared.store.lease import Lease, holder_name

log = logging.getLogger("complaints.projector")

NOTIFY_CHANNEL = "complaints_events"
#: Longest wait between the attempts of a projector whose steps keep failing.
RETRY_MAX_SECONDS = 5.0


class Projection(Protocol):
    name: str
    #: Whether its batches fold complaints' events onto aggregates, and so read each such
    #: event also as an aggregate is built from it (`StoredEvent.sealed`).
    folds: bool

    async def prepare(self, events: Sequence[StoredEvent]) -> Any:
        """Read what the batch needs (outside the write transaction)."""

    async def write(self, conn: AsyncConnection, prepared: Any) -> None:
        """Write the batch's effect (inside the transaction that moves the position)."""

    async def reset(self, conn: AsyncConnection) -> None:
        """Delete the projection's rows, for a rebuild from position 0."""


@dataclass(frozen=True)
class Lag:
    """How far a projection is behind the store's head."""

    #: The last event it has applied.
    position: int
    #: Events committed that it has not applied yet.
    events: int


def lags(positions: dict[str, int], head: int) -> dict[str, Lag]:
    """Each projection's lag behind `head`, the store's last global position (what `/ready`
    answers and the metrics show)."""
    return {name: Lag(p, max(head - p, 0)) for name, p in positions.items()}


async def lag_seconds(
    store: ComplaintStore, behind: dict[str, Lag], now: datetime
) -> dict[str, float]:
    """How long the oldest event each projection has not applied yet has waited (0 when
    none): one event read per position behind."""
    waited: dict[int, float] = {}
    for lag in behind.values():
        if lag.events and lag.position not in waited:
            first = await store.read(lag.position, 1)
            waited[lag.position] = max((now - first[0].at).total_seconds(), 0.0) if first else 0.0
    return {
        name: waited.get(lag.position, 0.0) if lag.events else 0.0 for name, lag in behind.items()
    }


class PositionMoved(Exception):
    """Another writer moved the projection's position first; this batch was rolled back."""


async def position_of(engine: AsyncEngine, name: str) -> int:
    async with engine.connect() as conn:
        found = await conn.scalar(
            select(projection_tracking.c.position).where(projection_tracking.c.name == name)
        )
    return int(found or 0)


async def wait_for_position(
    engine: AsyncEngine, name: str, wanted: int | None, seconds: float
) -> int:
    """The projection's position, after waiting up to `seconds` for it to reach `wanted`."""
    position = await position_of(engine, name)
    if wanted is None:
        return position
    deadline = asyncio.get_running_loop().time() + seconds
    while position < wanted and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
        position = await position_of(engine, name)
    return position


async def reset(engine: AsyncEngine, projection: Projection) -> None:
    """Empty a projection and move it back to the start, in one transaction.

    A projector running meanwhile finds its position moved, drops its batch and starts over.
    """
    async with engine.begin() as conn:
        await projection.reset(conn)
        await _set_position(conn, projection.name, 0)


async def ensure_tracked(engine: AsyncEngine, name: str) -> None:
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(projection_tracking).values(name=name, position=0))
    except IntegrityError:
        pass  # already tracked


async def _set_position(conn: AsyncConnection, name: str, position: int) -> None:
    table = projection_tracking
    moved = await conn.execute(update(table).where(table.c.name == name).values(position=position))
    if moved.rowcount == 0:
        await conn.execute(insert(table).values(name=name, position=position))


async def catch_up_once(
    store: ComplaintStore,
    engine: AsyncEngine,
    projection: Projection,
    batch_size: int = 500,
) -> int:
    """Apply the next batch of events; returns how many were applied."""
    position = await position_of(engine, projection.name)
    events = await store.read(position, batch_size, sealed=projection.folds)
    return await apply_batch(engine, projection, position, events)


async def catch_up_together(
    store: ComplaintStore,
    engine: AsyncEngine,
    projections: Sequence[Projection],
    batch_size: int = 500,
    failed: Callable[[Projection], None] | None = None,
    applied_batch: Callable[[Projection], None] | None = None,
) -> int:
    """Apply the next batch of each projection; those at the same position (as they are,
    running together) share one read of the store. Returns how many events were applied in
    all. With `failed`, a projection whose batch raised is handed to it and the others go
    on; without, the exception propagates. `applied_batch` is told of each batch applied.

    Sharing is safe: no projection changes the events it is given (the one that folds
    complaints folds `StoredEvent.sealed`, decoded apart from what the others read)."""
    found = await positions_of(engine, [p.name for p in projections])
    at: dict[int, list[Projection]] = {}
    for projection in projections:
        at.setdefault(found.get(projection.name, 0), []).append(projection)
    applied = 0
    for position, group in at.items():
        try:
            events = await store.read(position, batch_size, sealed=any(p.folds for p in group))
        except Exception:
            if failed is None:
                raise
            for projection in group:
                failed(projection)
            continue
        for projection in group:
            try:
                done = await apply_batch(engine, projection, position, events)
            except Exception:
                if failed is None:
                    raise
                failed(projection)
                continue
            applied += done
            if done and applied_batch is not None:
                applied_batch(projection)
    return applied


async def positions_of(engine: AsyncEngine, names: Sequence[str]) -> dict[str, int]:
    """The positions of the projections tracked under these names (untracked ones absent)."""
    table = projection_tracking
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(table.c.name, table.c.position).where(table.c.name.in_(list(names)))
        )
        return {name: int(position) for name, position in rows}


async def apply_batch(
    engine: AsyncEngine, projection: Projection, position: int, events: Sequence[StoredEvent]
) -> int:
    """Apply `events`, read after `position`, and move the projection on from `position` to
    the last of them, in one transaction; how many were applied (0 if it had moved)."""
    if not events:
        return 0
    if position == 0:
        await ensure_tracked(engine, projection.name)
    prepared = await projection.prepare(events)
    new_position = events[-1].position
    assert new_position is not None
    table = projection_tracking
    try:
        async with engine.begin() as conn:
            await projection.write(conn, prepared)
            moved = await conn.execute(
                update(table)
                .where(table.c.name == projection.name, table.c.position == position)
                .values(position=new_position)
            )
            if moved.rowcount != 1:
                raise PositionMoved(projection.name)
    except PositionMoved:
        log.info("projection %s moved on elsewhere; batch dropped", projection.name)
        return 0
    except IntegrityError:
        # A key clash is another projector's batch committed first (it made us wait, so its
        # position is visible now) — or a real bug, which must not be swallowed.
        if await position_of(engine, projection.name) != position:
            log.info("projection %s written concurrently; batch dropped", projection.name)
            return 0
        raise
    except OperationalError as exc:
        if "database is locked" not in str(exc):
            raise
        # SQLite: another writer held the file too long. Nothing was written; try again.
        log.warning("projection %s: %s; batch retried", projection.name, exc)
        return 0
    return len(events)


class ProjectionRunner:
    """Runs the projections in this process while it holds the lease."""

    def __init__(
        self,
        store: ComplaintStore,
        engine: AsyncEngine,
        projections: Sequence[Projection],
        *,
        lease_seconds: float = 10.0,
        poll_seconds: float = 0.25,
        batch_size: int = 500,
        listen_url: str | None = None,
        after_batch: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.projections = list(projections)
        self.lease = Lease(engine, "projectors", holder_name(self), lease_seconds)
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.listen_url = listen_url
        self.after_batch = after_batch
        self._wake = asyncio.Event()
        self._listener: Any = None

    @property
    def is_leader(self) -> bool:
        return self.lease.held

    async def run(self) -> None:
        self._listener = await self._listen()
        failures = 0
        try:
            while True:
                try:
                    await self._tick()
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception:  # (the database gone, most likely): back off while it is
                    failures += 1
                    wait = min(self.poll_seconds * 2 ** min(failures - 1, 16), RETRY_MAX_SECONDS)
                    log.exception("projector step failed; retrying in %.2f s", wait)
                    self.store.metrics.projector_errors.labels("runner").inc()
                    await asyncio.sleep(wait)
        finally:
            if self._listener is not None:
                with contextlib.suppress(Exception):
                    await self._listener.close()
            with contextlib.suppress(Exception):
                await self.lease.release()

    async def positions(self) -> dict[str, int]:
        """Each projection's position, in one query (every /ready and every scrape asks)."""
        names = [p.name for p in self.projections]
        t = projection_tracking.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(t.name, t.position).where(t.name.in_(names)))
            found = {str(name): int(position) for name, position in rows}
        return {name: found.get(name, 0) for name in names}

    async def lags(self, head: int) -> dict[str, Lag]:
        """Each projection's lag behind `head` (the store's last position)."""
        return lags(await self.positions(), head)

    async def _tick(self) -> None:
        if not await self.lease.acquire():
            await asyncio.sleep(self.lease.seconds / 3)
            return
        # Cleared before reading, so a NOTIFY that arrives during the read is not lost.
        self._wake.clear()
        # One broken projection must not stop the others; it is retried each tick and its
        # lag shows in /ready.
        metrics = self.store.metrics

        def failed(projection: Projection) -> None:
            log.exception("projection %s failed", projection.name)
            metrics.projector_errors.labels(projection.name).inc()

        applied = await catch_up_together(
            self.store,
            self.engine,
            self.projections,
            self.batch_size,
            failed=failed,
            applied_batch=lambda projection: metrics.projector_batches.labels(
                projection.name
            ).inc(),
        )
        if self.after_batch is not None:
            await self.after_batch()
        if applied == 0:
            if self.listen_url and (self._listener is None or self._listener.is_closed()):
                self._listener = await self._listen()
            # Woken at once by NOTIFY on PostgreSQL; otherwise poll. Never longer than a
            # third of the lease, so it is renewed in time.
            timeout = min(self.poll_seconds, self.lease.seconds / 3)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that lands as its timeout fires, and shutdown then waits for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _listen(self) -> Any:
        if not self.listen_url:
            return None
        import asyncpg

        try:
            conn = await asyncpg.connect(self.listen_url, timeout=5)
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
            # Reconnected on the next idle tick after the server went away.
            conn.add_termination_listener(lambda *_: self._wake.set())
            return conn
        except Exception as exc:  # polling still works
            log.warning("LISTEN unavailable, polling instead: %s", exc)
            return None
