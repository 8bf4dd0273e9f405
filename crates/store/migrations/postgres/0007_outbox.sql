-- Notifications (SQLite's version 8): subscriptions, the outbox, its attempts, the channels'
-- cursors.

CREATE TABLE notify_subscriptions (
    channel TEXT NOT NULL,
    topic   TEXT NOT NULL,
    PRIMARY KEY (channel, topic)
);

CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel         TEXT   NOT NULL,
    topic           TEXT   NOT NULL,
    event_seq       BIGINT,
    ticket          TEXT,
    payload         TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    status          TEXT   NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT,
    sent_at         BIGINT,
    remote_id       TEXT
);

CREATE INDEX outbox_queue ON outbox (channel, status, id);
CREATE INDEX outbox_remote ON outbox (channel, remote_id) WHERE remote_id IS NOT NULL;

CREATE TABLE outbox_attempts (
    outbox      BIGINT  NOT NULL REFERENCES outbox (id),
    number      INTEGER NOT NULL,
    at          BIGINT  NOT NULL,
    ok          BOOLEAN NOT NULL,
    http_status INTEGER,
    latency_ms  BIGINT  NOT NULL,
    error       TEXT,
    PRIMARY KEY (outbox, number)
);

CREATE TABLE notify_cursors (
    name  TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);
