-- API keys (app/apikeys.py). A key is shown once, when it is created; the
-- database keeps only its public id and the SHA-256 of the whole key, so a
-- dump of this table lets nobody in. Owned by the `app` role, like items.
CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    scope        text NOT NULL,
    secret_hash  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    -- Written at most about once a minute per key, never on every request.
    last_used_at timestamptz,
    CONSTRAINT api_keys_id_format CHECK (id ~ '^[0-9a-f]{12}$'),
    CONSTRAINT api_keys_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    CONSTRAINT api_keys_scope_known CHECK (scope IN ('read', 'write')),
    CONSTRAINT api_keys_hash_is_sha256 CHECK (octet_length(secret_hash) = 32),
    CONSTRAINT api_keys_expires_after_creation CHECK (expires_at IS NULL OR expires_at > created_at)
);

-- One live key per name, so that `keys revoke NAME` means exactly one key; a
-- revoked key keeps its row (and its name) for the record.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;
