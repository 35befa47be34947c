-- Operational incidents (issue #15): one row per thing that went wrong (`job:<name>`,
-- `projection:<name>`, `policy:<name>@<instance>`, `messages:<channel>`), open while it lasts. Opening and closing
-- are conditional updates, so that of several instances exactly one sends each alert.
CREATE TABLE IF NOT EXISTS alert_incidents (
    incident     TEXT   PRIMARY KEY,
    summary      TEXT   NOT NULL,
    opened_at_ms BIGINT NOT NULL,
    closed_at_ms BIGINT,
    -- When the opening's and the end's announcements were queued (NULL: to try again).
    announced_open_at_ms BIGINT,
    announced_over_at_ms BIGINT
);
