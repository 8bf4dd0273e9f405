-- What the HTTP side keeps: API tokens (stored as SHA-256 hashes, never in clear) and the
-- idempotency keys of retried creates. (Version 5: version 4 is the counters table.)

CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash    TEXT    NOT NULL UNIQUE,   -- hex SHA-256 of the token; the token itself is shown once
    scope         TEXT    NOT NULL,          -- read | write | admin
    label         TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);

-- A create sent with an `Idempotency-Key`: the first request reserves the key (response NULL
-- while it runs), its result is stored, and a retry with the same key gets that result.
CREATE TABLE idempotency_keys (
    principal     TEXT    NOT NULL,          -- who sent it: a token id, or `anonymous`
    key           TEXT    NOT NULL,
    request_hash  TEXT    NOT NULL,          -- hex SHA-256 of method, path and body
    created_at    INTEGER NOT NULL,
    status        INTEGER,
    response      TEXT,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
