"""Alembic environment: run from `shared.readmodel.migrate`, which hands in a connection."""

from __future__ import annotations

from alembic import context

from shared.readmodel.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `python -m shared.cli.setup_store`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
