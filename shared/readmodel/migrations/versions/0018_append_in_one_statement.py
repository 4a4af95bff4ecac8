"""PostgreSQL: one function writes a command's events with the customer keys and bindings
they need, in one statement and one commit, without a table lock (`shared.store.postgres`).

It gives its transaction an id before the events take their positions (what lets readers
find a horizon no later commit falls behind); writes a new customer key and the complaint's
binding; locks the keys the events are sealed with (`FOR KEY SHARE`: an erasure's delete
waits for this commit, then finds the binding) and reports which still exist; refuses with
a unique violation (retried by the store) a binding while the customer has another live key
(a concurrent first complaint of the same customer made theirs first). A binding to a key
erased meanwhile is written: the complaint stays bound to it, and the store records the
erasure on it, as on every complaint whose key went. SQLite needs
none of this: one writer at a time (`shared.store.sqlite`).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

APPEND = """
CREATE OR REPLACE FUNCTION complaints_events_append(
    events stored_event_uuid[],
    key_ids text[], key_customers text[], key_keks text[], key_wrapped bytea[],
    bind_complaints text[], bind_customers text[], bind_keys text[],
    used text[], at float8
) RETURNS TABLE(appended bigint, live_keys text[]) LANGUAGE plpgsql AS $BODY$
DECLARE
    alive text[];
BEGIN
    PERFORM pg_current_xact_id();
    INSERT INTO wrapped_keys (key_id, customer_id, kek_id, wrapped, created_at)
        SELECT k.key_id, k.customer_id, k.kek_id, k.wrapped, at
        FROM unnest(key_ids, key_customers, key_keks, key_wrapped)
            AS k(key_id, customer_id, kek_id, wrapped)
        ON CONFLICT (customer_id) DO NOTHING;
    SELECT coalesce(array_agg(w.key_id), '{}') INTO alive FROM (
        SELECT key_id FROM wrapped_keys WHERE key_id = ANY(used) ORDER BY key_id FOR KEY SHARE
    ) AS w;
    IF EXISTS (
        SELECT 1 FROM unnest(bind_customers, bind_keys) AS b(customer_id, key_id)
        JOIN wrapped_keys w ON w.customer_id = b.customer_id AND w.key_id <> b.key_id
    ) THEN
        RAISE EXCEPTION 'the customer''s key changed while the complaint was accepted'
            USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO customer_complaints (complaint_id, customer_id, key_id, bound_at)
        SELECT b.complaint_id, b.customer_id, b.key_id, at
        FROM unnest(bind_complaints, bind_customers, bind_keys)
            AS b(complaint_id, customer_id, key_id)
        ON CONFLICT (complaint_id) DO NOTHING;
    RETURN QUERY WITH written AS (
        INSERT INTO complaints_events (originator_id, originator_version, topic, state)
        SELECT e.originator_id, e.originator_version, e.topic, e.state FROM unnest(events) AS e
        RETURNING notification_id
    ) SELECT written.notification_id, alive FROM written;
END;
$BODY$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND)
        # The NOTIFY of migration 0002 ran inside every write, and NOTIFY takes a cluster-wide
        # lock through the commit: the store notifies after its commit instead.
        op.execute("DROP TRIGGER IF EXISTS complaints_events_notify ON complaints_events")
        op.execute("DROP FUNCTION IF EXISTS complaints_notify_new_events()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION complaints_notify_new_events() RETURNS trigger AS $$ "
            "BEGIN PERFORM pg_notify('complaints_events', ''); RETURN NULL; END; "
            "$$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER complaints_events_notify AFTER INSERT ON complaints_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION complaints_notify_new_events()"
        )
        op.execute(
            "DROP FUNCTION IF EXISTS complaints_events_append("
            "stored_event_uuid[], text[], text[], text[], bytea[], text[], text[], text[], "
            "text[], float8)"
        )
