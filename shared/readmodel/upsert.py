"""INSERT … ON CONFLICT DO UPDATE for both dialects we run on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection


async def upsert(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    if not rows:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(table).values(list(rows))
    updates = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
    await conn.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=updates))
