-- Sequenced dead letters: an event a projection could not apply is parked
-- here with its error, and so are the later events *of the same aggregate*
-- for that projection (they may depend on it), while every other aggregate
-- keeps flowing. `replay-tools parked retry` applies them in order after a
-- fix; `parked discard --yes` drops them (recorded in the audit trail).
CREATE TABLE IF NOT EXISTS projection_parked (
    projection     text        NOT NULL,
    tx             bigint      NOT NULL,
    seq            bigint      NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    event_sequence bigint      NOT NULL,
    event_type     text        NOT NULL,
    -- The handler's error for the event that failed; NULL for one parked behind it.
    error          text,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, tx, seq)
);
CREATE INDEX IF NOT EXISTS projection_parked_stream
    ON projection_parked (projection, aggregate_type, aggregate_id);
