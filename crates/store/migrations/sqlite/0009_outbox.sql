-- Notifications: the channels' subscriptions, the outbox (one row per notification and channel,
-- written by `append_event` in the transaction of the fact's event), each delivery attempt, and
-- the channels' cursors (Telegram's getUpdates offset).

-- What each channel is sent, replaced as a whole from the configuration.
CREATE TABLE notify_subscriptions (
    channel TEXT NOT NULL,
    topic   TEXT NOT NULL,
    PRIMARY KEY (channel, topic)
) WITHOUT ROWID;

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    channel         TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    event_seq       INTEGER,                    -- the fact's event; none for a ping
    ticket          TEXT,
    payload         TEXT    NOT NULL,           -- JSON: the event's kind, time, actor and data
    created_at      INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending', -- pending | sent | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,                    -- claimed for delivery until
    last_error      TEXT,
    sent_at         INTEGER,
    remote_id       TEXT                        -- what the receiver called it (a Telegram message)
);

-- Each channel's queue in order: the sender takes the oldest pending rows.
CREATE INDEX outbox_queue ON outbox (channel, status, id);
CREATE INDEX outbox_remote ON outbox (channel, remote_id) WHERE remote_id IS NOT NULL;

CREATE TABLE outbox_attempts (
    outbox      INTEGER NOT NULL REFERENCES outbox (id),
    number      INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    ok          INTEGER NOT NULL,               -- 1: delivered
    http_status INTEGER,
    latency_ms  INTEGER NOT NULL,
    error       TEXT,
    PRIMARY KEY (outbox, number)
) WITHOUT ROWID;

CREATE TABLE notify_cursors (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
