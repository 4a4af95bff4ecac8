"""PostgreSQL: NOTIFY projectors when events are inserted, so they need not poll.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHANNEL = "complaints_events"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite projectors poll
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION complaints_notify_new_events() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER complaints_events_notify
        AFTER INSERT ON complaints_events
        FOR EACH STATEMENT EXECUTE FUNCTION complaints_notify_new_events()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS complaints_events_notify ON complaints_events")
    op.execute("DROP FUNCTION IF EXISTS complaints_notify_new_events()")
