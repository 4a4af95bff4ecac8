"""The SQLite event store, made durable: every connection commits with `synchronous=FULL`.

In WAL mode (the library's choice) SQLite's durability depends on `synchronous`: with NORMAL a
transaction committed just before a power cut may be lost; with FULL it is not. Builds of SQLite
differ in their default, so we set it on every connection rather than trust the build. The
library reads `PERSISTENCE_MODULE` as a factory class, which is how this one is chosen.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteFactory,
)
from eventsourcing.utils import Environment, EnvType

from shared.store.sealing import KeyRing
from shared.store.snapshots import LOAD_PARTS, split_snapshot
from shared.store.tables import customer_complaints, wrapped_keys

#: What every connection to a SQLite store runs first (the read-model engine too). Deleted
#: content is overwritten with zeros (an erased customer's key, a forgotten stored answer), in
#: the database file and its free pages; the erasure then truncates the WAL (keystore).
DURABLE_PRAGMAS = ("PRAGMA synchronous=FULL", "PRAGMA secure_delete=ON")


class DurableConnectionPool(SQLiteConnectionPool):
    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        cursor = connection.cursor()
        for pragma in DURABLE_PRAGMAS:
            cursor.execute(pragma)
        return connection


class BindingRecorder(SQLiteApplicationRecorder):
    """The library's recorder, writing the customer key and binding a command made, and
    checking its keys, in the events' transaction (as `complaints_events_append` does on
    PostgreSQL). The events go first: the transaction then holds the write lock, so no other
    writer commits between the checks and the commit."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        keys: KeyRing | None = kwargs.get("keys")
        with self.datastore.transaction(commit=True) as c:
            positions = self._insert_events(c, stored_events, **kwargs)
            live = self._bind(c, keys) if keys is not None and stored_events else None
        if keys is not None and live is not None:
            keys.written(live)  # committed
        return positions

    def select_with_snapshot(
        self, originator_id: UUID, lte: int | None, snapshots_table: str
    ) -> tuple[StoredEvent | None, list[StoredEvent], dict[str, Any] | None]:
        """The complaint's key binding, its latest snapshot at or below `lte` and the events
        after it, in one query (as `shared.store.postgres.OrderedRecorder`'s)."""
        statement = (
            f"WITH s AS (SELECT originator_version, topic, state FROM {snapshots_table} "
            "WHERE originator_id = :id AND (:lte IS NULL OR originator_version <= :lte) "
            "ORDER BY originator_version DESC LIMIT 1) "
            "SELECT 0 AS part, NULL AS originator_version, NULL AS topic, NULL AS state, "
            "c.key_id AS bound, k.key_id, k.customer_id, k.kek_id, k.wrapped "
            f"FROM {customer_complaints.name} c LEFT JOIN {wrapped_keys.name} k "
            "ON k.key_id = c.key_id WHERE c.complaint_id = :complaint UNION ALL "
            "SELECT 1, originator_version, topic, state, NULL, NULL, NULL, NULL, NULL FROM s "
            "UNION ALL SELECT 2, e.originator_version, e.topic, e.state, NULL, NULL, NULL, "
            f"NULL, NULL FROM {self.events_table_name} e WHERE e.originator_id = :id AND "
            "e.originator_version > coalesce((SELECT originator_version FROM s), 0) "
            "AND (:lte IS NULL OR e.originator_version <= :lte) ORDER BY 1, 2"
        )
        params = {"id": originator_id.hex, "lte": lte, "complaint": str(originator_id)}
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            rows = [dict(zip(LOAD_PARTS, row, strict=True)) for row in c.fetchall()]
        return split_snapshot(originator_id, rows)

    @staticmethod
    def _bind(c: SQLiteCursor, keys: KeyRing) -> set[str]:
        """Write the command's bindings (and new keys); the keys it used that exist."""
        bindings, used = keys.pending()
        now = time.time()
        c.executemany(
            f"INSERT INTO {wrapped_keys.name} (key_id, customer_id, kek_id, wrapped, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (customer_id) DO NOTHING",
            [(b.key_id, b.customer_id, b.kek_id, b.wrapped, now) for b in bindings if b.wrapped],
        )
        marks = ", ".join("?" for _ in used)
        c.execute(
            f"SELECT key_id, customer_id FROM {wrapped_keys.name} WHERE key_id IN ({marks})",
            used,
        )
        live = {str(row[0]) for row in c.fetchall()}
        customers = sorted({b.customer_id for b in bindings})
        c.execute(
            f"SELECT customer_id, key_id FROM {wrapped_keys.name} "
            f"WHERE customer_id IN ({', '.join('?' for _ in customers)})",
            customers,
        )
        owned = {str(row[0]): str(row[1]) for row in c.fetchall()}
        if any(owned.get(b.customer_id, b.key_id) != b.key_id for b in bindings):
            # Another first complaint of the customer made their key first: retried. (A key
            # erased meanwhile is bound all the same; the store records the erasure.)
            raise IntegrityError("the customer's key changed while the complaint was accepted")
        c.executemany(
            f"INSERT INTO {customer_complaints.name} "
            "(complaint_id, customer_id, key_id, bound_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (complaint_id) DO NOTHING",
            [(b.complaint_id, b.customer_id, b.key_id, now) for b in bindings],
        )
        return live


class DurableSQLiteFactory(SQLiteFactory):
    application_recorder_class = BindingRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        pool = self.datastore.pool  # not used yet: it opens connections on demand
        self.datastore.pool = DurableConnectionPool(
            db_name=pool.db_name,
            lock_timeout=pool.lock_timeout,
            pool_size=pool.pool_size,
            max_overflow=pool.max_overflow,
            pool_timeout=pool.pool_timeout,
            max_age=pool.max_age,
            pre_ping=pool.pre_ping,
        )
