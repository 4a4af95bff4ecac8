"""Which KEKs each running process holds: every service process reports the KEKs of its KEK file
every `REPORT_SECONDS`, and a rotation puts a staged KEK in force only once every process
heard from in the last `ALIVE_SECONDS` holds it (`ComplaintStore.rotate_kek`).

This is what makes a rotation safe where each host has its own copy of the KEK file (a
Kubernetes Secret, synced to each pod within a minute or so): stage the new KEK in the file
everywhere first, and only then wrap keys under it, so no process ever meets a key wrapped
by a KEK it does not hold. A process that stops cleanly takes its row away; one that died
falls out of the count `ALIVE_SECONDS` after its last report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.store.tables import kek_holders

log = logging.getLogger(__name__)

#: How often a process reports the KEKs it holds (it reads its KEK file again first).
REPORT_SECONDS = 30.0
#: A process not heard from for this long is taken to be gone (10 missed reports).
ALIVE_SECONDS = 300.0
#: Rows of processes gone this long are deleted by the others' reports.
FORGET_SECONDS = 86400.0


@dataclass(frozen=True)
class Holder:
    """A process as it last reported: who, when, and the KEKs its file held."""

    holder: str
    seen_at: datetime
    kek_ids: tuple[str, ...]


async def report(engine: AsyncEngine, holder: str, kek_ids: list[str], now: float) -> None:
    """Record that `holder` holds these KEKs at `now` (seconds since the epoch)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    values = {"holder": holder, "kek_ids": sorted(kek_ids), "seen_at": now}
    upsert = dialect.insert(kek_holders).values(values)
    upsert = upsert.on_conflict_do_update(
        index_elements=[kek_holders.c.holder],
        set_={"kek_ids": upsert.excluded.kek_ids, "seen_at": upsert.excluded.seen_at},
    )
    async with engine.begin() as conn:
        await conn.execute(upsert)
        await conn.execute(delete(kek_holders).where(kek_holders.c.seen_at < now - FORGET_SECONDS))


async def forget(engine: AsyncEngine, holder: str) -> None:
    """`holder` stops: it holds nothing any more."""
    async with engine.begin() as conn:
        await conn.execute(delete(kek_holders).where(kek_holders.c.holder == holder))


async def lacking(engine: AsyncEngine, kek_id: str, now: float) -> list[Holder]:
    """The processes heard from in the last `ALIVE_SECONDS` whose KEK file lacks `kek_id`."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(kek_holders)
                .where(kek_holders.c.seen_at >= now - ALIVE_SECONDS)
                .order_by(kek_holders.c.holder)
            )
        ).all()
    return [
        Holder(row.holder, datetime.fromtimestamp(row.seen_at, UTC), tuple(row.kek_ids))
        for row in rows
        if kek_id not in row.kek_ids
    ]


async def keep_reporting(
    step: Callable[[], Awaitable[None]], *, every: float = REPORT_SECONDS
) -> None:
    """Report (`step`) every `every` seconds until cancelled. A failed report is logged and
    tried again at its next time."""
    while True:
        try:
            await step()
        except Exception:
            log.warning("could not report the KEKs this process holds", exc_info=True)
        await asyncio.sleep(every)
