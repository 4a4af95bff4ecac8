"""Which KEKs each running process holds: every service process (and `shared.cli.project`)
reports the KEKs of its KEK file, and the one in force there, every `REPORT_SECONDS`. A
rotation puts a staged KEK in force only once every process heard from in the last
`ALIVE_SECONDS` holds it, and at least one has been heard from; a purge never destroys a KEK
that such a process still has in force (`ComplaintStore.rotate_kek`, `purge_keks`).

This is what makes a rotation safe where each host has its own copy of the KEK file (a
Kubernetes Secret, synced to each pod within a minute or so): stage the new KEK in the file
everywhere first, and only then wrap keys under it, so no process ever meets a key wrapped
by a KEK it does not hold. A process that stops (or dies) falls out of the count
`ALIVE_SECONDS` after its last report.
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

from shared.store.lease import database_time
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
    """A process as it last reported: who, when, the KEKs its file held and the one in force."""

    holder: str
    seen_at: datetime
    kek_ids: tuple[str, ...]
    in_force: str


async def report(engine: AsyncEngine, holder: str, kek_ids: list[str], in_force: str) -> None:
    """Record that `holder` holds these KEKs, `in_force` wrapping its new keys, now (by the
    database's clock, as leases are: skewed hosts still agree on who is alive)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    async with engine.begin() as conn:
        now = await database_time(conn)
        values = {"holder": holder, "kek_ids": sorted(kek_ids), "in_force": in_force}
        upsert = dialect.insert(kek_holders).values(**values, seen_at=now)
        upsert = upsert.on_conflict_do_update(
            index_elements=[kek_holders.c.holder],
            set_={name: upsert.excluded[name] for name in ("kek_ids", "in_force", "seen_at")},
        )
        await conn.execute(upsert)
        await conn.execute(delete(kek_holders).where(kek_holders.c.seen_at < now - FORGET_SECONDS))


async def alive(engine: AsyncEngine) -> list[Holder]:
    """The processes heard from in the last `ALIVE_SECONDS`, by the database's clock."""
    async with engine.connect() as conn:
        now = await database_time(conn)
        rows = (
            await conn.execute(
                select(kek_holders)
                .where(kek_holders.c.seen_at >= now - ALIVE_SECONDS)
                .order_by(kek_holders.c.holder)
            )
        ).all()
    return [
        Holder(
            row.holder,
            datetime.fromtimestamp(row.seen_at, UTC),
            tuple(row.kek_ids),
            row.in_force,
        )
        for row in rows
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
