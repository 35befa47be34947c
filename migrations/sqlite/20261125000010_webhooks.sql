-- Vendor webhook deliveries; see the PostgreSQL migration of the same name.
-- Timestamps are RFC 3339 text, the payload JSON text.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    provider     TEXT    NOT NULL,
    delivery_id  TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    received_at  TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 1,
    claimed_at   TEXT    NOT NULL,
    processed_at TEXT,
    outcome      TEXT,
    PRIMARY KEY (provider, delivery_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_unprocessed
    ON webhook_deliveries (received_at) WHERE processed_at IS NULL;
