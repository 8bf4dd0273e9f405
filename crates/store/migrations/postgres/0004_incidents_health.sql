-- Incidents (unique by fingerprint) with their occurrences, the servers' heartbeats, and the
-- last health verdict recorded (SQLite's version 6).

CREATE TABLE incidents (
    id          BIGINT  PRIMARY KEY,            -- from the `incident_id` counter
    fingerprint TEXT    NOT NULL UNIQUE,        -- CHECK:SUBJECT; one incident per condition, ever
    check_name  TEXT    NOT NULL,
    severity    TEXT    NOT NULL,               -- warning | critical (of the latest occurrence)
    status      TEXT    NOT NULL,               -- open | resolved
    resolved_at BIGINT,
    resolution  TEXT,                           -- JSON: {"by": "cleared"} or {"by": "operator", ...}
    occurrences BIGINT  NOT NULL,
    first_seen  BIGINT  NOT NULL,
    last_seen   BIGINT  NOT NULL,
    opened_at   BIGINT  NOT NULL,               -- when last opened or reopened
    reopened    BIGINT  NOT NULL DEFAULT 0,
    detail      TEXT    NOT NULL,
    ticket      TEXT                            -- KEY-N the condition is about, if any
);

CREATE INDEX incidents_open ON incidents (status, opened_at);

-- Every occurrence, with what the check saw.
CREATE TABLE incident_occurrences (
    incident BIGINT NOT NULL REFERENCES incidents (id),
    number   BIGINT NOT NULL,                   -- 1 for the one that opened the incident
    at       BIGINT NOT NULL,
    detail   TEXT   NOT NULL,
    evidence TEXT   NOT NULL,                   -- JSON
    PRIMARY KEY (incident, number)
);

INSERT INTO counters (name, value) VALUES ('incident_id', 0);

-- One row per server node, updated by `mission serve` every reconcile interval: the basis of
-- "the server is alive". `dispatcher_pass_at` is when its dispatcher last finished a pass.
CREATE TABLE server_heartbeats (
    node               TEXT   PRIMARY KEY,
    pid                BIGINT NOT NULL,
    started_at         BIGINT NOT NULL,
    beat_at            BIGINT NOT NULL,
    interval_ms        BIGINT NOT NULL,
    dispatcher_pass_at BIGINT
);

-- The last verdict recorded with `health.changed`: one row.
CREATE TABLE health_verdict (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    verdict    TEXT   NOT NULL,                 -- working | degraded | broken
    codes      TEXT   NOT NULL,                 -- JSON array of reason codes
    changed_at BIGINT NOT NULL,
    event_seq  BIGINT NOT NULL                  -- the health.changed event that recorded it
);

-- Tickets waiting in todo, oldest first: the narrowing of the starvation check.
CREATE INDEX tickets_waiting ON tickets (state, state_since);
