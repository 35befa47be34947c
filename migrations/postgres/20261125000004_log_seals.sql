-- Fingerprints of the log, written by `replay-tools verify`: an event edited
-- in the database after it was sealed no longer matches its hash.
CREATE TABLE IF NOT EXISTS log_seals (
    aggregate_type TEXT   NOT NULL,
    aggregate_id   TEXT   NOT NULL,
    sequence       BIGINT NOT NULL,
    ordinal        BIGINT NOT NULL,
    content_hash   TEXT   NOT NULL,
    chain_hash     TEXT   NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
