-- Vendor webhook deliveries (Stripe, Twilio, Resend), recorded after the
-- signature is verified and before anything acts on them. The primary key is
-- the vendor's delivery id (Stripe `evt_…`, Svix `svix-id`, Twilio
-- `MessageSid` or `MessageSid:status`): the INSERT … ON CONFLICT DO NOTHING
-- that records a delivery is also the decision to act on it, so redeliveries
-- and concurrent duplicates change nothing (see api/src/webhooks/ledger.rs).
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    provider     text        NOT NULL,
    delivery_id  text        NOT NULL,
    event_type   text        NOT NULL,
    received_at  timestamptz NOT NULL,
    -- The verified body (Twilio's form parameters as a JSON object). Holds
    -- PII (phone numbers, SMS text, email addresses): see docs/webhooks.md.
    payload      jsonb       NOT NULL,
    -- Claims taken on this delivery; a claim older than the lease whose
    -- processing never finished (crash) may be taken over by a redelivery.
    attempts     integer     NOT NULL DEFAULT 1,
    claimed_at   timestamptz NOT NULL,
    processed_at timestamptz,
    -- What the delivery did: applied, no_change, ignored, unmapped: …, rejected: …
    outcome      text,
    PRIMARY KEY (provider, delivery_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_unprocessed
    ON webhook_deliveries (received_at) WHERE processed_at IS NULL;
