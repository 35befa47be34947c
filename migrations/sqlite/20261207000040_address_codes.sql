-- Proving an email address before it becomes a portal account's sign-in (issue #14).
-- A sign-up (and an email change) first mails a six-digit code to the address, and only
-- the code's owner can go on; so the answer to "start a sign-up" is the same whether or not
-- the address already has an account, and nobody learns who is a customer.
--
-- The code is not a business fact and the address is not yet anyone's, so neither enters
-- the event log: `address_codes` keeps the code's SHA-256 per address (a new code voids the
-- last), and the message that carries it names its recipient `withheld`; the plain code and
-- the address wait in `password_reset_tokens` until the outbox sends it (then both rows of
-- that table are deleted, as for reset links). Rows here are deleted when they expire.
-- `claimed_by` is the customer a sign-up made or claimed, so a retry of it is recognised;
-- `request_key` the SHA-256 of the request's idempotency key, so a retried request sends no
-- second code.
CREATE TABLE IF NOT EXISTS address_codes (
    purpose       text   NOT NULL,
    address_hash  text   NOT NULL,
    requested_by  text   NOT NULL,
    code_hash     text   NOT NULL,
    expires_at_ms bigint NOT NULL,
    claimed_by    text,
    request_key   text,
    PRIMARY KEY (purpose, address_hash, requested_by)
);
CREATE INDEX IF NOT EXISTS address_codes_expiry ON address_codes (expires_at_ms);

-- The address of a `withheld` recipient, beside its message's code.
ALTER TABLE password_reset_tokens ADD COLUMN address text;
