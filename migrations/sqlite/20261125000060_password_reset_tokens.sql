-- Plain password-reset tokens waiting to be emailed; see the PostgreSQL migration of the same name.
CREATE TABLE IF NOT EXISTS password_reset_tokens (
    message_id    TEXT    PRIMARY KEY,
    token         TEXT    NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS password_reset_tokens_expiry ON password_reset_tokens (expires_at_ms);
