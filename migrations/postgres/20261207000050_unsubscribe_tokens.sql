-- One-click unsubscribe links in marketing email (issue #16, RFC 8058). Each marketing
-- email gets one random token (the same on every attempt, so a retried send is the same
-- email), with the customer it unsubscribes. POSTing the link records the consent
-- withdrawal as an event once (`used_at_ms`); a token that is unknown, or used already,
-- changes nothing. Rows go after 400 days (`expired-message-secrets`).
CREATE TABLE IF NOT EXISTS unsubscribe_tokens (
    message_id    text   PRIMARY KEY,
    token         text   NOT NULL UNIQUE,
    customer_id   text   NOT NULL,
    created_at_ms bigint NOT NULL,
    used_at_ms    bigint
);
