-- One data key per customer (crypto-shredding, see docs/events.md "Personal
-- data"). Personal fields of that customer's events are encrypted with it;
-- erasing the customer sets key_bytes to NULL, which makes every stored copy
-- of those fields unreadable while the events stay. Lives in the read-model
-- database (the log's own on PostgreSQL and SQLite).
CREATE TABLE IF NOT EXISTS personal_data_keys (
    subject_id  text        PRIMARY KEY,
    key_bytes   bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    erased_at   timestamptz
);
