"""INSERT … ON CONFLICT DO UPDATE for both dialects we run on."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert


async def upsert(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    """Insert `rows` (each with every column), each replacing the row of its `keys`: one
    statement, compiled once per table and sent with every row's parameters (executemany),
    not a statement of its own per batch with a parameter per value."""
    if not rows:
        return
    await conn.execute(_statement(conn.dialect.name, table, tuple(keys)), list(rows))


@cache
def _statement(dialect: str, table: Table, keys: tuple[str, ...]) -> Insert:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table)
    updates = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
    return statement.on_conflict_do_update(index_elements=list(keys), set_=updates)
