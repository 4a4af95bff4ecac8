"""Bring our SQL tables to the newest schema with Alembic (the setup step runs this)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, *, kek: Any = None, revision: str = "head") -> bool:
    """Migrate to `revision`. `kek` (a `shared.store.keystore.Kek`) wraps the customer keys a
    store from before the key store held in plaintext (revision 0014). Whether it moved any:
    then the database must be scrubbed of them."""
    attributes: dict[str, Any] = {}

    def run(sync: Connection) -> None:
        config = alembic_config(sync)
        config.attributes["kek"] = kek
        command.upgrade(config, revision)
        attributes.update(config.attributes)

    async with engine.begin() as conn:
        await conn.run_sync(run)
    return bool(attributes.get("moved_plaintext_keys"))


async def at_head(engine: AsyncEngine) -> bool:
    """Whether our tables are at this code's newest schema, or at one this code does not know
    (a later release's setup step has run: migrations only add, so this version still works
    with it — a rollback, or an old pod restarted mid-rollout, must not wait forever); changes
    nothing."""

    def current(sync: Connection) -> bool:
        script = ScriptDirectory.from_config(alembic_config())
        stored = MigrationContext.configure(sync).get_current_revision()
        if stored is None:
            return False
        try:
            script.get_revision(stored)
        except CommandError:
            return True  # newer than this code
        return stored == script.get_current_head()

    async with engine.connect() as conn:
        return await conn.run_sync(current)
