-- A store restored with PostgreSQL's own tools (pg_dump/pg_restore into another cluster,
-- a managed database, a major upgrade by dump) must keep its global order.
--
-- The order key was the writing transaction's id (xid8). Another cluster's counter may be
-- lower than the stored ids, so its new events would sort before the restored ones and
-- the readers, past those, would skip them. The key is now this cluster's transaction id
-- plus an offset kept in the store: 0 where the events were written; raised at start when
-- the stored keys are ahead of this cluster (the server does it, docs/architecture.md), so
-- new keys continue above every restored one. Within one cluster the key still follows
-- the transaction id, so the gap-safe reading rule is unchanged: read only below
-- `event_order_readable_below()`, this cluster's oldest running transaction plus the
-- offset. pg_upgrade, base backups and replicas keep the counter and need nothing.
CREATE TABLE IF NOT EXISTS event_order_offset (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    order_offset bigint NOT NULL
);
INSERT INTO event_order_offset (only_row, order_offset) VALUES (true, 0)
    ON CONFLICT (only_row) DO NOTHING;

-- The key a transaction's events are written with.
CREATE OR REPLACE FUNCTION event_order_key() RETURNS bigint
    LANGUAGE sql VOLATILE
    AS $$ SELECT pg_current_xact_id()::text::bigint + order_offset FROM event_order_offset $$;

-- Every key below this belongs to a transaction that has ended (committed or not).
CREATE OR REPLACE FUNCTION event_order_readable_below() RETURNS bigint
    LANGUAGE sql STABLE
    AS $$ SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint + order_offset
          FROM event_order_offset $$;

ALTER TABLE events ALTER COLUMN transaction_id DROP DEFAULT;
ALTER TABLE events ALTER COLUMN transaction_id TYPE bigint USING (transaction_id::text::bigint);
ALTER TABLE events ALTER COLUMN transaction_id SET DEFAULT event_order_key();
