"""The async SQLAlchemy engine for our own tables beside the library's event tables (the store's,
the read models', the audit chain's): asyncpg on PostgreSQL, aiosqlite on SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.settings import Settings
from shared.store.sqlite import DURABLE_PRAGMAS


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.url
    if settings.is_postgres:
        return create_async_engine(
            url.set(drivername="postgresql+asyncpg"),
            pool_size=2,
            max_overflow=8,
            # No ping before each use (a round trip per checkout): a connection found dead
            # fails its statement, the pool drops every connection of that age, and the
            # request answers 503 (shared.http.errors) for the client to retry.
            pool_pre_ping=False,
            connect_args={"timeout": 5, "command_timeout": 30},
        )
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url.set(drivername="sqlite+aiosqlite"), connect_args={"timeout": 10}
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _durable(dbapi_connection: Any, _: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in DURABLE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    return engine
