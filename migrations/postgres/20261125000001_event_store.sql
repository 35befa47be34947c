-- The event log. Columns of postgres-es's `events` table, extended with the
-- global position, the writing transaction's id (for the commit-ordered
-- reader, see docs/architecture.md) and the time the database recorded it.
CREATE TABLE IF NOT EXISTS events (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence > 0),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    position        bigint      GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
-- The global log is read in (transaction_id, position) order.
CREATE UNIQUE INDEX IF NOT EXISTS events_global_order ON events (transaction_id, position);
CREATE UNIQUE INDEX IF NOT EXISTS events_position ON events (position);

-- Snapshots, as postgres-es names them; written by our own store (see
-- commands::store) so that events are applied exactly once.
CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_type   text        NOT NULL,
    aggregate_id     text        NOT NULL,
    last_sequence    bigint      NOT NULL,
    current_snapshot bigint      NOT NULL,
    payload          jsonb       NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Client-supplied idempotency keys, written in the same transaction as the
-- command's events: a retry finds the original outcome.
CREATE TABLE IF NOT EXISTS command_idempotency (
    idempotency_key text        PRIMARY KEY,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    outcome         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
