-- The outbox worker's index of outbound messages (api/src/outbox/index.rs):
-- which messages are due for an attempt, and which message a vendor's id
-- (Twilio SID, Resend email id) belongs to. Derived from the OutboundMessage
-- events and rebuilt from them (checkpoint `outbox-index` in
-- policy_checkpoints); the aggregate, not this table, decides what is sent.
-- Times are milliseconds since the epoch, so the SQL is the same on both engines.
CREATE TABLE IF NOT EXISTS outbox_messages (
    message_id          text   PRIMARY KEY,
    channel             text   NOT NULL,
    status              text   NOT NULL,
    due_at_ms           bigint,
    provider            text,
    provider_message_id text,
    last_sequence       bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_messages_due ON outbox_messages (due_at_ms) WHERE due_at_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_messages_provider_id ON outbox_messages (provider, provider_message_id);
