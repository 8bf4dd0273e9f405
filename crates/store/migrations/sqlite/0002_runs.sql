-- Runs (one attempt of one worker on one ticket), questions, and dispatcher decisions.

ALTER TABLE tickets ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;     -- the current attempt number
ALTER TABLE tickets ADD COLUMN resume INTEGER NOT NULL DEFAULT 0;       -- 1: answered, for the needs-input lane
ALTER TABLE tickets ADD COLUMN not_before INTEGER;                      -- backoff after a failed attempt

CREATE INDEX tickets_dispatchable ON tickets (state, resume, priority DESC, number);

CREATE TABLE runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket           TEXT    NOT NULL REFERENCES tickets (id),
    attempt          INTEGER NOT NULL,           -- the fencing token
    worker           TEXT    NOT NULL,
    pool             TEXT    NOT NULL,
    lane             TEXT    NOT NULL,
    node             TEXT    NOT NULL,
    token_hash       TEXT    NOT NULL UNIQUE,    -- SHA-256 of the run token, hex
    started_at       INTEGER NOT NULL,
    heartbeat_at     INTEGER NOT NULL,
    lease_expires_at INTEGER NOT NULL,
    progress_at      INTEGER,                    -- last progress report from the run
    pid              INTEGER,                    -- also the process group id
    workspace        TEXT,
    session_id       TEXT,
    head_before      TEXT,
    head_after       TEXT,
    log_path         TEXT,
    ended_at         INTEGER,
    outcome          TEXT,                       -- submitted | asked | failed
    failure_class    TEXT,
    detail           TEXT,
    exit_code        INTEGER,
    input_tokens     INTEGER,
    output_tokens    INTEGER,
    cost_usd         REAL,
    UNIQUE (ticket, attempt)
);

-- At most one live run per ticket, enforced by the database itself.
CREATE UNIQUE INDEX runs_one_active_per_ticket ON runs (ticket) WHERE ended_at IS NULL;
CREATE INDEX runs_active ON runs (lease_expires_at) WHERE ended_at IS NULL;

CREATE TABLE questions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket      TEXT    NOT NULL REFERENCES tickets (id),
    run         INTEGER NOT NULL REFERENCES runs (id),
    text        TEXT    NOT NULL,
    asked_at    INTEGER NOT NULL,
    answer      TEXT,
    answered_at INTEGER,
    answered_by TEXT
);

CREATE UNIQUE INDEX questions_one_open_per_ticket ON questions (ticket) WHERE answer IS NULL;

-- The dispatcher's latest decision per ticket and lane; a decision is written (with an event)
-- only when it differs from the one stored.
CREATE TABLE dispatch_decisions (
    ticket      TEXT    NOT NULL,
    lane        TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    decision    TEXT    NOT NULL,               -- JSON: {"runnable": bool, "reasons": [...]}
    decided_at  INTEGER NOT NULL,
    PRIMARY KEY (ticket, lane)
);

-- Dispatcher-wide facts that are not about one ticket (e.g. capacity could not be counted).
CREATE TABLE dispatcher_state (
    name        TEXT    PRIMARY KEY,
    value       TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL
);
