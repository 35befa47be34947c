-- Sequenced dead letters (see the PostgreSQL migration of the same name).
CREATE TABLE IF NOT EXISTS projection_parked (
    projection     TEXT    NOT NULL,
    tx             INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    event_sequence INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    error          TEXT,
    parked_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (projection, tx, seq)
);
CREATE INDEX IF NOT EXISTS projection_parked_stream
    ON projection_parked (projection, aggregate_type, aggregate_id);
