"""A lease in the database elects one process, among all service processes, for a job that one
at a time does: the projections (whose leader also signs checkpoints and does the
housekeeping), the notification dispatcher, the webhook sender, and escalation's deadline
watch, incident watch and calendar recalculation. `run_while_leading` is the loop every job
but the projector (which also wakes on NOTIFY and backs off) runs its lease with."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable

from sqlalchemy import insert, or_, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.store.tables import projection_leases


async def database_time(conn: AsyncConnection) -> float:
    """Seconds since the epoch by the database server's clock."""
    if conn.dialect.name == "postgresql":
        query = "SELECT EXTRACT(EPOCH FROM clock_timestamp())"
    else:
        query = "SELECT (julianday('now') - 2440587.5) * 86400.0"
    return float((await conn.execute(text(query))).scalar_one())


def holder_name(owner: object) -> str:
    """Who holds a lease: this host, this process and the object running the job (two jobs of
    one name in one process, as in tests, are two holders)."""
    return f"{socket.gethostname()}:{os.getpid()}:{id(owner):x}"


class Lease:
    """Held by one `holder` until it stops renewing for `seconds`.

    Leadership is only an economy (one process does the work); correctness does not depend on
    it: every projection write also compares-and-sets its position, so even two briefly
    overlapping leaders apply each event exactly once.
    """

    def __init__(self, engine: AsyncEngine, name: str, holder: str, seconds: float) -> None:
        self.engine = engine
        self.name = name
        self.holder = holder
        self.seconds = seconds
        self.held = False

    async def acquire(self) -> bool:
        """Take or renew the lease; True while this process holds it."""
        try:
            return await self._acquire()
        except Exception:
            self.held = False  # the database is unreachable: nobody can lead on our word
            raise

    async def _acquire(self) -> bool:
        table = projection_leases
        async with self.engine.begin() as conn:
            # The database's clock, not each host's: skewed hosts still agree on expiry.
            now = await database_time(conn)
            renewed = await conn.execute(
                update(table)
                .where(
                    table.c.name == self.name,
                    or_(table.c.holder == self.holder, table.c.expires_at < now),
                )
                .values(
                    holder=self.holder, expires_at=now + self.seconds, fencing=table.c.fencing + 1
                )
            )
            if renewed.rowcount == 1:
                self.held = True
                return True
        try:
            async with self.engine.begin() as conn:
                now = await database_time(conn)
                await conn.execute(
                    insert(table).values(
                        name=self.name,
                        holder=self.holder,
                        expires_at=now + self.seconds,
                        fencing=1,
                    )
                )
            self.held = True
        except IntegrityError:
            self.held = False
        return self.held

    async def release(self) -> None:
        if not self.held:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(projection_leases)
                .where(
                    projection_leases.c.name == self.name, projection_leases.c.holder == self.holder
                )
                .values(expires_at=0)
            )
        self.held = False


async def run_while_leading(
    lease: Lease,
    step: Callable[[], Awaitable[bool]],
    *,
    every: float,
    failed: str,
    log: logging.Logger,
) -> None:
    """Run `step` every `every` seconds while this process holds `lease`, until cancelled;
    then release the lease, so that a standby takes over at its next look instead of after
    the lease runs out.

    `step` returns True when it has more to do at once (a full batch): it runs again without
    waiting, and the lease is renewed before it. The lease is renewed at least every third of
    its time, also between steps of a job that runs seldom; a process that does not hold it
    looks again as often, and on taking it over runs the step at once. A step that raises is
    logged (`failed`) and tried again at its next time.
    """
    ticks = max(1, math.ceil(every / (lease.seconds / 3)))  # looks at the lease per step
    pause = every / ticks
    countdown = 0  # looks until the next step
    try:
        while True:
            more = False
            try:
                if not await lease.acquire():
                    countdown = 0
                elif countdown == 0:
                    countdown = ticks
                    more = await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(failed)
            if more:
                countdown = 0
                continue
            countdown = max(countdown - 1, 0)
            await asyncio.sleep(pause)
    finally:
        with contextlib.suppress(Exception):
            await lease.release()
