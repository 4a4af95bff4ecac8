"""The Alembic migrations build exactly the tables the code declares (shared.readmodel.tables)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.readmodel.tables import metadata
from shared.store.facade import ComplaintStore


async def test_migrations_match_the_declared_tables(store: ComplaintStore) -> None:
    async with store.engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    # The event store's own tables (and their indexes) are the library's, not declared here.
    ours = [d for d in differences if _table_of(d) in metadata.tables]
    assert ours == []


def _table_of(difference: Any) -> str | None:
    """The table a difference is about; column changes come as a list of tuples."""
    if isinstance(difference, list):
        return str(difference[0][2])
    kind, obj = difference[0], difference[1]
    if kind.endswith("_table"):
        return str(obj.name)
    if kind.endswith("_index"):
        return str(obj.table.name)
    return str(difference[2])  # add_column / remove_column: (kind, schema, table, column)
