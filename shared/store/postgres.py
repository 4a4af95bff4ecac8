"""The PostgreSQL event recorder: writers never wait for each other, readers never skip.

The `eventsourcing` library keeps its notification ids in commit order by taking
`LOCK TABLE … IN EXCLUSIVE MODE` in every write transaction, and wakes readers by `NOTIFY`
inside it, which takes a cluster-wide lock through the commit. Every writer then commits one
at a time, and PostgreSQL cannot group their commits. This recorder takes neither lock:

- **Writes.** One statement, in autocommit: a function (`complaints_events_append`, migrations
  0018 and 0020) that first gives its transaction an id (`pg_current_xact_id()`), writes the
  customer key and binding an acceptance needs, locks the keys the events are sealed with (an
  erasure waits for the commit), inserts the events, whose positions come from the table's
  sequence, and stores the command's Idempotency-Key answer if it brings one (`StoredAnswer`):
  one round trip, one commit per command. Optimistic concurrency stays the
  unique (stream, version). `NOTIFY` goes out after the commit, on the same connection, in a
  transaction of its own that writes nothing (no WAL flush, no lock held through a commit).
- **Reads in global order.** Without the lock, a transaction may take position 7, stay open,
  while another takes 8 and commits: a reader that went on to 8 would never see 7. So a reader
  only reads up to a *horizon* every event below which has committed or never will. The
  horizon is found without a lock: read the sequence's last value L, then (in a later
  statement, so a later snapshot) the transactions in progress. A transaction holding a
  position ≤ L took it after it got its id (the function above), so it is in that list or
  already committed. Once every one of them has finished, L is safe. Each recorder keeps the
  (L, in-progress) pairs it has seen, so a reader is never blocked by a write: it reads up to
  the newest safe L and the rest a moment later (the writer's NOTIFY wakes it).

Positions remain strictly increasing in the order readers see; there can be gaps (a write
that failed took a value from the sequence), as there could before. Major incidents' and
snapshots' tables are unchanged.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment, EnvType
from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier, Literal
from psycopg.types.json import Jsonb

from shared.store.idempotency import StoredAnswer
from shared.store.keystore import reconnecting
from shared.store.sealing import KeyRing
from shared.store.snapshots import split_snapshot
from shared.store.tables import customer_complaints, wrapped_keys

#: How many (last value, in-progress) pairs a recorder remembers while waiting for them.
PENDING_KEPT = 64
#: How long a read in global order waits for writes in progress before it reads what is safe.
READ_WAIT_SECONDS = 1.0
#: How long a reader that wants the head (`max_notification_id`) waits for writes in progress.
HEAD_WAIT_SECONDS = 10.0


class OrderedRecorder(PostgresApplicationRecorder):
    """The library's recorder, without its table lock and NOTIFY in the write (see above)."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(datastore.schema)
        table = Identifier(events_table_name)
        # Created by the migration that owns it (0020), with the key tables it writes.
        self.append_statement = SQL(
            "SELECT appended, live_keys FROM {schema}.{function}"
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
        ).format(schema=schema, function=Identifier(f"{events_table_name}_append"))
        self.notify_statement = SQL("NOTIFY {0}").format(Identifier(self.channel_name))
        self.last_value_statement = SQL(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS last FROM {0}"
        ).format(Identifier(f"{events_table_name}_notification_id_seq"))
        # Not pg_snapshot_xip(pg_current_snapshot()): a snapshot's xmax is the latest
        # completed xid + 1, so a transaction in progress with a newer id is not listed.
        # Every transaction's id is in its backend's slot (or, prepared, in
        # pg_prepared_xacts) from its assignment until its commit is visible. Only the
        # transactions that write to the events table count: a position is taken by the
        # INSERT, after it has locked the table (ROW EXCLUSIVE, held until the commit is
        # visible), so a writer with a position at or below the sequence's value read
        # before holds that lock now, or has finished. A long transaction elsewhere in the
        # database (a report, a migration, an operator's session) does not hold readers up.
        self.in_progress_statement = SQL(
            "SELECT ARRAY(SELECT a.backend_xid::text FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'relation' AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.relation = {table}::regclass AND a.backend_xid IS NOT NULL "
            "UNION SELECT transaction::text FROM pg_prepared_xacts "
            "WHERE database = current_database()) AS xids"
        ).format(table=Literal(f'"{datastore.schema}"."{events_table_name}"'))
        self.last_below_statement = SQL(
            "SELECT MAX(notification_id) AS last FROM {schema}.{table} WHERE notification_id <= %s"
        ).format(schema=schema, table=table)
        self.first_events_statement = SQL(
            "SELECT 0 AS part, originator_id, originator_version, topic, state "
            "FROM {schema}.{table} WHERE originator_id = ANY(%(firsts)s::uuid[]) "
            "AND originator_version = 1 UNION ALL "
            "SELECT 1, originator_id, originator_version, topic, state FROM {schema}.{table} "
            "WHERE originator_id = %(all)s::uuid ORDER BY 1, 3"
        ).format(schema=schema, table=table)
        #: How long reads wait for writes in progress (`READ_WAIT_SECONDS`, `HEAD_WAIT_SECONDS`).
        self.read_wait = READ_WAIT_SECONDS
        self.head_wait = HEAD_WAIT_SECONDS
        self._lock = threading.Lock()
        self._load_statements: dict[str, Composed] = {}
        self._pending: deque[tuple[int, frozenset[str]]] = deque()
        self._safe = 0

    # ------------------------------------------------------------------- writes
    @reconnecting
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert the events, with the bindings and keys they need (`keys`, a KeyRing) and
        the command's stored answer (`answer`), in one statement and one commit; their
        positions."""
        if not stored_events:
            return []
        keys: KeyRing | None = kwargs.get("keys")
        answer: StoredAnswer | None = kwargs.get("answer")
        bindings, used = keys.pending() if keys is not None else ([], [])
        new = [b for b in bindings if b.wrapped is not None]
        rows = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        params = (
            rows,
            [b.key_id for b in new],
            [b.customer_id for b in new],
            [b.kek_id for b in new],
            [b.wrapped for b in new],
            [b.complaint_id for b in bindings],
            [b.customer_id for b in bindings],
            [b.key_id for b in bindings],
            used,
            time.time(),
            Jsonb(answer.as_json()) if answer is not None else None,
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.append_statement, params, prepare=True)
            written = curs.fetchall()
            # Committed: a NOTIFY that fails now (the connection lost) must not send the
            # append again (it would find its own events and fail the command). Readers
            # poll; the broken connection is discarded by the pool on its return.
            with contextlib.suppress(psycopg.Error):
                curs.execute(self.notify_statement)
        if keys is not None:
            keys.written(written[0]["live_keys"] if written else ())
        return [int(row["appended"]) for row in written]

    # -------------------------------------------------------------------- reads
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Events in global order, never past the horizon; what was written before the call
        (up to `stop`) is waited for, briefly, so a reader sees its own writes."""
        horizon = self._wait_for(self.read_wait, stop)
        notifications: Sequence[Notification] = super().select_notifications(
            start,
            limit,
            min(stop, horizon) if stop is not None else horizon,
            topics,
            inclusive_of_start=inclusive_of_start,
        )
        return notifications

    @reconnecting
    def max_notification_id(self) -> int | None:
        """The last position a reader can read up to now, after waiting for the writes in
        progress (up to `HEAD_WAIT_SECONDS`): every event at or below it has committed."""
        horizon = self._wait_for(self.head_wait)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.last_below_statement, (horizon,), prepare=True)
            row = curs.fetchone()
        return row["last"] if row else None

    def _wait_for(self, seconds: float, stop: int | None = None) -> int:
        """The horizon, once it reaches the positions taken before the call (up to `stop`),
        or `seconds` have passed: writes in progress finish within milliseconds."""
        deadline = time.monotonic() + seconds
        last, horizon = self._observe()
        wanted = last if stop is None else min(last, stop)
        while horizon < wanted and time.monotonic() < deadline:
            time.sleep(0.001)
            horizon = self._observe()[1]
        return horizon

    def horizon(self) -> int:
        """The highest position below which every event has committed or never will."""
        return self._observe()[1]

    @reconnecting
    def _observe(self) -> tuple[int, int]:
        """The sequence's last value now, and the horizon.

        One reader at a time per process: each pair is judged by transactions seen in
        progress after it was taken."""
        with self._lock:
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(self.last_value_statement, prepare=True)
                row = curs.fetchone()
                last = int(row["last"]) if row else 0
                curs.execute(self.in_progress_statement, prepare=True)
                row = curs.fetchone()
            running = frozenset(row["xids"] if row else ())
            self._pending.append((last, running))
            while self._pending:
                seen_last, seen_running = self._pending[0]
                if seen_running & running:
                    break  # one of them still runs (and later pairs saw it too)
                self._safe = max(self._safe, seen_last)
                self._pending.popleft()
            while len(self._pending) > PENDING_KEPT:
                self._pending.popleft()  # an older pair only delays; a newer one will do
            return last, self._safe

    @reconnecting
    def select_first_events(
        self, originator_ids: Sequence[UUID], *, all_of: UUID | None = None
    ) -> tuple[list[StoredEvent], list[StoredEvent]]:
        """The first event of each of these aggregates that has one, and every event of
        `all_of`, in one query."""
        params = {"firsts": list(originator_ids), "all": all_of}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.first_events_statement, params, prepare=True)
            parts: tuple[list[StoredEvent], list[StoredEvent]] = ([], [])
            for row in curs.fetchall():
                parts[row["part"]].append(
                    StoredEvent(
                        originator_id=row["originator_id"],
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=bytes(row["state"]),
                    )
                )
        return parts

    @reconnecting
    def select_with_snapshot(
        self, originator_id: UUID, lte: int | None, snapshots_table: str
    ) -> tuple[StoredEvent | None, list[StoredEvent], dict[str, Any] | None]:
        """The complaint's key binding, its latest snapshot at or below `lte` and the events
        after it, in one query (`shared.store.application.ComplaintsApplication.load`)."""
        statement = self._load_statements.get(snapshots_table)
        if statement is None:  # composed once per table, not per read
            statement = self._load_statements[snapshots_table] = self._load_statement(
                snapshots_table
            )
        params = {"id": originator_id, "lte": lte, "complaint": str(originator_id)}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            rows = curs.fetchall()
        return split_snapshot(originator_id, rows)

    def _load_statement(self, snapshots_table: str) -> Composed:
        """`select_with_snapshot`'s statement for this snapshots table."""
        return SQL(
            "WITH s AS (SELECT originator_version, topic, state FROM {schema}.{snapshots} "
            "WHERE originator_id = %(id)s AND (%(lte)s::bigint IS NULL "
            "OR originator_version <= %(lte)s) ORDER BY originator_version DESC LIMIT 1) "
            "SELECT 0 AS part, NULL::bigint AS originator_version, NULL::text AS topic, "
            "NULL::bytea AS state, c.key_id AS bound, k.key_id, k.customer_id, k.kek_id, "
            "k.wrapped FROM {bindings} c LEFT JOIN {keys} k ON k.key_id = c.key_id "
            "WHERE c.complaint_id = %(complaint)s UNION ALL "
            "SELECT 1, originator_version, topic, state, NULL, NULL, NULL, NULL, NULL FROM s "
            "UNION ALL SELECT 2, e.originator_version, e.topic, e.state, NULL, NULL, NULL, "
            "NULL, NULL FROM {schema}.{events} e WHERE e.originator_id = %(id)s AND "
            "e.originator_version > coalesce((SELECT originator_version FROM s), 0) AND "
            "(%(lte)s::bigint IS NULL OR e.originator_version <= %(lte)s) ORDER BY 1, 2"
        ).format(
            schema=Identifier(self.datastore.schema),
            snapshots=Identifier(snapshots_table),
            events=Identifier(self.events_table_name),
            bindings=Identifier(customer_complaints.name),
            keys=Identifier(wrapped_keys.name),
        )


class DrainingDatastore(PostgresDatastore):
    """Connections are not pinged before each use. One found dead (the server restarted, or
    dropped it) fails its statement; then every connection in the pool is replaced, since
    those idle beside it died with it, and the caller's retry takes a fresh one."""

    @contextmanager
    def get_connection(self) -> Iterator[Connection[DictRow]]:
        taken: Connection[DictRow] | None = None
        try:
            with super().get_connection() as conn:
                taken = conn
                yield conn
        except (OperationalError, InterfaceError):
            # Only a dead connection says the others are dead too (not a deadlock or a
            # timeout, which would leave them all closed under load).
            if taken is None or taken.broken or taken.closed:
                self.pool.drain()
            raise


class OrderedPostgresFactory(PostgresFactory):
    """The library's PostgreSQL persistence with our recorder (`PERSISTENCE_MODULE`)."""

    application_recorder_class = OrderedRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        self.datastore.__class__ = DrainingDatastore  # made by the library's constructor
