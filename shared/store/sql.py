"""SQL tables of our own beside the event store (same database), reached with async SQLAlchemy."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.settings import Settings

metadata = MetaData()

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("client", String(200), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(10), nullable=False),  # running | done
    Column("claimed_at", Float, nullable=False),  # seconds since the epoch
    Column("status_code", Integer),
    Column("headers", JSON),
    Column("body", LargeBinary),
)


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.url
    if settings.is_postgres:
        return create_async_engine(
            url.set(drivername="postgresql+asyncpg"),
            pool_size=2,
            max_overflow=8,
            pool_pre_ping=True,
            connect_args={"timeout": 5, "command_timeout": 30},
        )
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return create_async_engine(url.set(drivername="sqlite+aiosqlite"), connect_args={"timeout": 10})
