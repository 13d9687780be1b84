-- Everything the gateway keeps beyond a request: one table of entries by space and key.
-- `value` is opaque bytes (secrets sealed by the gateway before they get here);
-- `expires_at` is Unix milliseconds, NULL for never.
CREATE TABLE IF NOT EXISTS mcpmw_entries (
    space TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (space, key)
);
CREATE INDEX IF NOT EXISTS mcpmw_entries_expiry ON mcpmw_entries (expires_at) WHERE expires_at IS NOT NULL;
