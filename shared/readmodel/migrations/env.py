"""Alembic environment: run from `shared.readmodel.migrate`, which hands in a connection.

The migrations are one history for every table we declare, whoever owns it (the store's in
shared.store.tables, the read models' in shared.readmodel.tables, the audit chain's in
shared.audit.tables); each revision spells out its own operations and reads no table module.
To autogenerate a revision, hand the owners' `metadata` in as
`config.attributes["target_metadata"]` (a list); tests/integration/test_migrations.py checks
that the migrations build exactly what they declare.
"""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `python -m shared.cli.setup_store`")

context.configure(
    connection=connection,
    target_metadata=config.attributes.get("target_metadata"),
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
