-- Where each policy (process manager) has got to in the global log. Written
-- after a batch is handled; re-handling events after a crash is harmless
-- because every policy command carries an idempotency key derived from the
-- triggering event (see commands::policies).
CREATE TABLE IF NOT EXISTS policy_checkpoints (
    name       TEXT    PRIMARY KEY,
    tx         INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Referral codes handed out, claimed before the ReferralCodeIssued event is
-- appended: the primary key makes codes unique across customers, and the
-- table maps a typed code back to its owner.
CREATE TABLE IF NOT EXISTS referral_code_claims (
    code        TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    claimed_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS referral_code_claims_customer ON referral_code_claims (customer_id);
