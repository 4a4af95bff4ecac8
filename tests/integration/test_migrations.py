"""The Alembic migrations build exactly the tables the code declares, with each owner: the
store's (shared.store.tables), the read models' (shared.readmodel.tables) and the audit
chain's (shared.audit.tables)."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect

from shared.audit import tables as audit_tables
from shared.readmodel import tables as readmodel_tables
from shared.store import tables as store_tables
from shared.store.facade import ComplaintStore
from shared.webhooks import tables as webhook_tables

OWNERS = {
    "store": store_tables.metadata,
    "readmodel": readmodel_tables.metadata,
    "audit": audit_tables.metadata,
    "webhooks": webhook_tables.metadata,
}


#: What the eventsourcing library creates (its names differ on SQLite), and Alembic's own.
NOT_OURS = {
    "alembic_version",
    "complaints_events",
    "complaints_snapshots",
    "stored_events",
    "stored_snapshots",
}


async def test_every_table_has_one_owner(store: ComplaintStore) -> None:
    declared = [name for metadata in OWNERS.values() for name in metadata.tables]
    async with store.engine.connect() as conn:
        present = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert sorted(declared) == sorted(set(declared))  # no table declared by two owners
    assert present - NOT_OURS == set(declared)


@pytest.mark.parametrize("owner", OWNERS)
async def test_migrations_match_the_declared_tables(store: ComplaintStore, owner: str) -> None:
    metadata: MetaData = OWNERS[owner]
    async with store.engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    # Only this owner's tables: the others' are checked with theirs, and the event and
    # snapshot tables (and their indexes) are the library's, declared nowhere here.
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
