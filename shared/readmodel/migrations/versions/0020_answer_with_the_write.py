"""PostgreSQL: the append function (0018) also stores the Idempotency-Key answer of the
command it writes, in the same statement and commit: a keyed acceptance needs no claim
committed before it and no answer committed after it (`shared.store.idempotency.StoredAnswer`).

The answer comes as one `jsonb` argument (NULL when there is none) without its position,
which the function fills in: the position of the last event written for the complaint it is
about (the `event-position` header and the recipe's `position`). It takes the place of a claim
whose request had the same fingerprint (one that ran out, or one of an older process); it
leaves an answer stored meanwhile as it is (a duplicate that raced it: its events collide on
the complaint's id anyway); a claim or answer of another request under the key refuses the
write with a unique violation (the store retries, then finds which request wrote what). The
function of 0018 stays, for processes not yet restarted on this code. SQLite stores the answer
in the events' transaction as well (`shared.store.sqlite`).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

APPEND = """
CREATE OR REPLACE FUNCTION complaints_events_append(
    events stored_event_uuid[],
    key_ids text[], key_customers text[], key_keks text[], key_wrapped bytea[],
    bind_complaints text[], bind_customers text[], bind_keys text[],
    used text[], at float8, answer jsonb
) RETURNS TABLE(appended bigint, live_keys text[]) LANGUAGE plpgsql AS $BODY$
DECLARE
    alive text[];
    ids bigint[];
    shown bigint;
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
    WITH written AS (
        INSERT INTO complaints_events (originator_id, originator_version, topic, state)
        SELECT e.originator_id, e.originator_version, e.topic, e.state FROM unnest(events) AS e
        RETURNING notification_id, originator_id
    ) SELECT array_agg(written.notification_id ORDER BY written.notification_id),
        max(written.notification_id)
            FILTER (WHERE written.originator_id::text = answer->>'complaint_id')
    INTO ids, shown FROM written;
    IF answer IS NOT NULL THEN
        INSERT INTO idempotency_keys AS i (client, key, request_hash, state, claimed_at,
            status_code, headers, body, complaint_id, recipe)
        VALUES (answer->>'client', answer->>'key', answer->>'request_hash', 'done',
            (answer->>'claimed_at')::float8, (answer->>'status_code')::integer,
            ((answer->'headers') || jsonb_build_object('event-position', shown::text))::json,
            NULL, answer->>'complaint_id',
            ((answer->'recipe') || jsonb_build_object('position', shown))::json)
        ON CONFLICT (client, key) DO UPDATE SET state = 'done',
            claimed_at = EXCLUDED.claimed_at, status_code = EXCLUDED.status_code,
            headers = EXCLUDED.headers, body = NULL, complaint_id = EXCLUDED.complaint_id,
            recipe = EXCLUDED.recipe
        WHERE i.state = 'running' AND i.request_hash = EXCLUDED.request_hash;
        IF NOT FOUND AND EXISTS (
            SELECT 1 FROM idempotency_keys WHERE client = answer->>'client'
                AND key = answer->>'key' AND request_hash <> answer->>'request_hash'
        ) THEN
            RAISE EXCEPTION 'the Idempotency-Key was taken by another request meanwhile'
                USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    RETURN QUERY SELECT unnest(ids), alive;
END;
$BODY$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS complaints_events_append("
            "stored_event_uuid[], text[], text[], text[], bytea[], text[], text[], text[], "
            "text[], float8, jsonb)"
        )
