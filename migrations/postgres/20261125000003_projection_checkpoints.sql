-- Where each projection (and each shadow rebuild) has got to in the global
-- log, updated in the same transaction as its read-model tables.
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name           text        PRIMARY KEY,
    version        bigint      NOT NULL,
    tx             bigint      NOT NULL DEFAULT 0,
    seq            bigint      NOT NULL DEFAULT 0,
    events_applied bigint      NOT NULL DEFAULT 0,
    state          text        NOT NULL DEFAULT 'running',
    last_error     text,
    error_position text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
