-- What the HTTP side keeps (SQLite's version 5): API tokens (stored as SHA-256 hashes, never in
-- clear) and the idempotency keys of retried creates.

CREATE TABLE api_tokens (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash    TEXT   NOT NULL UNIQUE,        -- hex SHA-256 of the token; the token itself is shown once
    scope         TEXT   NOT NULL,               -- read | write | admin
    label         TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);

-- A create sent with an `Idempotency-Key`: the first request reserves the key (response NULL
-- while it runs), its result is stored, and a retry with the same key gets that result. The
-- primary key decides between two nodes reserving the same key at once.
CREATE TABLE idempotency_keys (
    principal     TEXT   NOT NULL,               -- who sent it: a token id, or `anonymous`
    key           TEXT   NOT NULL,
    request_hash  TEXT   NOT NULL,               -- hex SHA-256 of method, path and body
    created_at    BIGINT NOT NULL,
    status        BIGINT,
    response      TEXT,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
