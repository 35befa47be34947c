-- One-click unsubscribe links in marketing email (issue #16, RFC 8058). Each send of a
-- marketing email gets a random token; only its SHA-256 is kept, with the customer it
-- unsubscribes. POSTing the link records the consent withdrawal as an event once
-- (`used_at_ms`); a token that is unknown, or used already, changes nothing.
CREATE TABLE IF NOT EXISTS unsubscribe_tokens (
    token_hash    text   PRIMARY KEY,
    customer_id   text   NOT NULL,
    message_id    text   NOT NULL,
    created_at_ms bigint NOT NULL,
    used_at_ms    bigint
);
