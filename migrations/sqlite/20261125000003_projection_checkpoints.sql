CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name           TEXT    PRIMARY KEY,
    version        INTEGER NOT NULL,
    tx             INTEGER NOT NULL DEFAULT 0,
    seq            INTEGER NOT NULL DEFAULT 0,
    events_applied INTEGER NOT NULL DEFAULT 0,
    state          TEXT    NOT NULL DEFAULT 'running',
    last_error     TEXT,
    error_position TEXT,
    updated_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
