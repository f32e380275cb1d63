-- One row per session. `{table}`, `{owner_index}` and `{expiry_index}` are
-- replaced by the configured table's quoted name and its index names before
-- this runs (see src/schema.rs): the file is a template, not plain SQL.
CREATE TABLE IF NOT EXISTS {table} (
    key_prefix  text        NOT NULL,
    id          text        NOT NULL,
    -- Each key's value as its JSON text, kept byte for byte, so other
    -- services can read it: SELECT (data->>'user')::jsonb FROM sessions.
    data        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    -- By the app servers' clocks, like every time in this table.
    expires_at  timestamptz NOT NULL,
    version     bigint      NOT NULL,
    owner       text,
    owner_until timestamptz,
    PRIMARY KEY (key_prefix, id),
    CHECK ((owner IS NULL) = (owner_until IS NULL))
);

-- "Log this user out everywhere" reads one owner's rows only.
CREATE INDEX IF NOT EXISTS {owner_index} ON {table} (key_prefix, owner)
    WHERE owner IS NOT NULL;

-- The sweep finds expired rows without reading the table.
CREATE INDEX IF NOT EXISTS {expiry_index} ON {table} (expires_at);
