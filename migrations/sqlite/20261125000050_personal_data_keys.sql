-- One data key per customer; see the PostgreSQL migration of the same name.
CREATE TABLE IF NOT EXISTS personal_data_keys (
    subject_id  TEXT PRIMARY KEY,
    key_bytes   BLOB,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    erased_at   TEXT
);
