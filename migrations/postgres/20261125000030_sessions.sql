-- Login sessions of staff users and portal customers. Operational state,
-- not business facts: the login itself is an event (StaffLoginRecorded,
-- PortalLoginRecorded); the token is stored only as its SHA-256.
CREATE TABLE IF NOT EXISTS sessions (
    token_hash     TEXT   PRIMARY KEY,
    principal_kind TEXT   NOT NULL,
    principal_id   TEXT   NOT NULL,
    role           TEXT,
    created_at     TEXT   NOT NULL,
    expires_at     TEXT   NOT NULL,
    revoked_at     TEXT,
    client_ip      TEXT
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
