-- Plain password-reset tokens waiting to be emailed (api/src/outbox/reset_tokens.rs).
-- The token must never enter the event log, yet the email that carries it is an
-- OutboundMessage whose body is an event: the body holds the placeholder
-- `{reset_token}` and the outbox worker fills it in from this row at send time.
-- A row is deleted once its message is sent or given up, and when it expires
-- (the PasswordResetRequested event keeps only the token's SHA-256).
-- Times are milliseconds since the epoch, so the SQL is the same on both engines.
CREATE TABLE IF NOT EXISTS password_reset_tokens (
    message_id    text   PRIMARY KEY,
    token         text   NOT NULL,
    expires_at_ms bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS password_reset_tokens_expiry ON password_reset_tokens (expires_at_ms);
