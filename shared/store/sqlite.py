"""The SQLite event store, made durable: every connection commits with `synchronous=FULL`.

In WAL mode (the library's choice) SQLite's durability depends on `synchronous`: with NORMAL a
transaction committed just before a power cut may be lost; with FULL it is not. Builds of SQLite
differ in their default, so we set it on every connection rather than trust the build. The
library reads `PERSISTENCE_MODULE` as a factory class, which is how this one is chosen.
"""

from __future__ import annotations

from eventsourcing.sqlite import SQLiteConnection, SQLiteConnectionPool, SQLiteFactory
from eventsourcing.utils import Environment, EnvType

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


class DurableSQLiteFactory(SQLiteFactory):
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
