"""A lease in the database elects one projector among all service processes."""

from __future__ import annotations

from sqlalchemy import insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.domain.clock import Clock
from shared.readmodel.tables import projection_leases


class Lease:
    """Held by one `holder` until it stops renewing for `seconds`.

    Leadership is only an economy (one process does the work); correctness does not depend on
    it: every projection write also compares-and-sets its position, so even two briefly
    overlapping leaders apply each event exactly once.
    """

    def __init__(
        self, engine: AsyncEngine, name: str, holder: str, seconds: float, clock: Clock
    ) -> None:
        self.engine = engine
        self.name = name
        self.holder = holder
        self.seconds = seconds
        self.clock = clock
        self.held = False

    async def acquire(self) -> bool:
        """Take or renew the lease; True while this process holds it."""
        now = self.clock().timestamp()
        table = projection_leases
        async with self.engine.begin() as conn:
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
