-- The outbox worker's index of outbound messages; see the PostgreSQL migration of the same name.
CREATE TABLE IF NOT EXISTS outbox_messages (
    message_id          TEXT    PRIMARY KEY,
    channel             TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    due_at_ms           INTEGER,
    provider            TEXT,
    provider_message_id TEXT,
    last_sequence       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_messages_due ON outbox_messages (due_at_ms) WHERE due_at_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_messages_provider_id ON outbox_messages (provider, provider_message_id);
