"""The SQLite event store, made durable: every connection commits with `synchronous=FULL`.

In WAL mode (the library's choice) SQLite's durability depends on `synchronous`: with NORMAL a
transaction committed just before a power cut may be lost; with FULL it is not. Builds of SQLite
differ in their default, so we set it on every connection rather than trust the build. The
library reads `PERSISTENCE_MODULE` as a factory class, which is how this one is chosen.
"""

from __future__ import annotations

import json
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

from shared.store.idempotency import StoredAnswer
from shared.store.sealing import KeyRing
from shared.store.snapshots import LOAD_PARTS, split_snapshot
from shared.store.tables import customer_complaints, idempotency_keys, wrapped_keys

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
        answer: StoredAnswer | None = kwargs.get("answer")
        with self.datastore.transaction(commit=True) as c:
            positions = self._insert_events(c, stored_events, **kwargs)
            live = self._bind(c, keys) if keys is not None and stored_events else None
            if answer is not None and stored_events:
                self._answer(c, answer, stored_events, positions or ())
        if keys is not None and live is not None:
            keys.written(live)  # committed
        return positions

    def select_first_events(
        self, originator_ids: Sequence[UUID], *, all_of: UUID | None = None
    ) -> tuple[list[StoredEvent], list[StoredEvent]]:
        """The first event of each of these aggregates that has one, and every event of
        `all_of`, in one query (as `shared.store.postgres.OrderedRecorder`'s)."""
        marks = ", ".join("?" for _ in originator_ids)
        table = self.events_table_name
        parts: tuple[list[StoredEvent], list[StoredEvent]] = ([], [])
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT 0 AS part, originator_id, originator_version, topic, state "
                f"FROM {table} WHERE originator_id IN ({marks}) AND originator_version = 1 "
                "UNION ALL SELECT 1, originator_id, originator_version, topic, state "
                f"FROM {table} WHERE originator_id = ? ORDER BY 1, 3",
                [*(i.hex for i in originator_ids), all_of.hex if all_of else None],
            )
            for row in c.fetchall():
                parts[row["part"]].append(
                    StoredEvent(
                        originator_id=self.convert_originator_id(row["originator_id"]),
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=row["state"],
                    )
                )
        return parts

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
    def _answer(
        c: SQLiteCursor,
        answer: StoredAnswer,
        stored_events: Sequence[StoredEvent],
        positions: Sequence[int],
    ) -> None:
        """Store the command's Idempotency-Key answer, its position filled in (as
        `complaints_events_append` does, migration 0020): in place of a claim of the same
        request, beside an answer stored meanwhile; a claim or answer of another request
        under the key refuses the write (retried, as a lost race is)."""
        shown = [
            p
            for e, p in zip(stored_events, positions, strict=True)
            if str(e.originator_id) == answer.complaint_id
        ]
        row = answer.at(max(shown) if shown else None)
        row["headers"] = json.dumps(row["headers"])
        row["recipe"] = json.dumps(row["recipe"])
        c.execute(
            f"INSERT INTO {idempotency_keys.name} (client, key, request_hash, state, "
            "claimed_at, status_code, headers, body, complaint_id, recipe) VALUES (:client, "
            ":key, :request_hash, :state, :claimed_at, :status_code, :headers, :body, "
            ":complaint_id, :recipe) ON CONFLICT (client, key) DO UPDATE SET state = 'done', "
            "claimed_at = excluded.claimed_at, status_code = excluded.status_code, "
            "headers = excluded.headers, body = NULL, complaint_id = excluded.complaint_id, "
            f"recipe = excluded.recipe WHERE {idempotency_keys.name}.state = 'running' "
            f"AND {idempotency_keys.name}.request_hash = excluded.request_hash",
            row,
        )
        c.execute(
            f"SELECT request_hash FROM {idempotency_keys.name} WHERE client = ? AND key = ?",
            (answer.client, answer.key),
        )
        found = c.fetchone()
        if found is not None and found[0] != answer.request_hash:
            raise IntegrityError("the Idempotency-Key was taken by another request meanwhile")

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
