-- The schema of the SQLite backend at its version 4, in PostgreSQL's types: tickets and their
-- dependencies, the event log, runs, questions, the dispatcher's decisions and facts, task runs,
-- and counters. Times are BIGINT milliseconds since the Unix epoch; JSON is stored as text (as in
-- SQLite: byte for byte as written, and a NUL escaped in a JSON string stays legal, which JSONB
-- refuses). The ticket body is BYTEA, since PostgreSQL's text cannot hold a NUL and bodies are
-- stored byte for byte.

CREATE TABLE tickets (
    number          BIGINT  PRIMARY KEY,           -- the N of KEY-N, from the ticket_number counter
    id              TEXT    NOT NULL UNIQUE,       -- KEY-N
    title           TEXT    NOT NULL,
    body            BYTEA   NOT NULL,              -- UTF-8, byte for byte
    state           TEXT    NOT NULL,
    assignee        TEXT,
    owner           TEXT,
    labels          TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings, sorted
    priority        BIGINT  NOT NULL DEFAULT 0,    -- higher runs first
    evidence_policy TEXT    NOT NULL,
    repo            TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    state_since     BIGINT  NOT NULL,              -- when the ticket entered its current state
    version         BIGINT  NOT NULL DEFAULT 1,    -- +1 on every change
    attempts        BIGINT  NOT NULL DEFAULT 0,    -- the current attempt number
    resume          BOOLEAN NOT NULL DEFAULT FALSE, -- answered, for the needs-input lane
    not_before      BIGINT                         -- backoff after a failed attempt
);

CREATE INDEX tickets_by_state ON tickets (state, priority DESC, number);
CREATE INDEX tickets_by_assignee ON tickets (assignee, state);
CREATE INDEX tickets_by_priority ON tickets (priority DESC, number);
CREATE INDEX tickets_dispatchable ON tickets (state, resume, priority DESC, number);

CREATE TABLE ticket_dependencies (
    ticket     TEXT NOT NULL REFERENCES tickets (id),
    depends_on TEXT NOT NULL REFERENCES tickets (id),
    PRIMARY KEY (ticket, depends_on)
);

CREATE INDEX ticket_dependencies_reverse ON ticket_dependencies (depends_on);

-- `seq` is not a sequence: it is taken from the `event_seq` counter inside the writing
-- transaction, whose row lock is held until commit, so numbers follow commit order and are dense.
CREATE TABLE events (
    seq    BIGINT PRIMARY KEY,
    at     BIGINT NOT NULL,
    kind   TEXT   NOT NULL,
    ticket TEXT,                                    -- KEY-N when the event is about a ticket
    actor  TEXT   NOT NULL,
    data   TEXT   NOT NULL                          -- JSON object
);

CREATE INDEX events_by_ticket ON events (ticket, seq);

-- The event log is append-only, enforced by the database itself.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END;
$$;

CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

CREATE TABLE runs (
    id               BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket           TEXT    NOT NULL REFERENCES tickets (id),
    attempt          BIGINT  NOT NULL,             -- the fencing token
    worker           TEXT    NOT NULL,
    pool             TEXT    NOT NULL,
    lane             TEXT    NOT NULL,
    node             TEXT    NOT NULL,             -- HOST:PID of the supervisor
    token_hash       TEXT    NOT NULL UNIQUE,      -- SHA-256 of the run token, hex
    started_at       BIGINT  NOT NULL,
    heartbeat_at     BIGINT  NOT NULL,
    lease_expires_at BIGINT  NOT NULL,
    progress_at      BIGINT,                       -- last progress report from the run
    pid              BIGINT,                       -- also the process group id
    workspace        TEXT,
    session_id       TEXT,
    head_before      TEXT,
    head_after       TEXT,
    log_path         TEXT,
    ended_at         BIGINT,
    outcome          TEXT,                         -- submitted | asked | failed
    failure_class    TEXT,
    detail           TEXT,
    exit_code        BIGINT,
    input_tokens     BIGINT,
    output_tokens    BIGINT,
    cost_usd         DOUBLE PRECISION,
    exited_at        BIGINT,                       -- when the supervisor saw the process gone
    UNIQUE (ticket, attempt)
);

-- At most one live run per ticket, enforced by the database itself.
CREATE UNIQUE INDEX runs_one_active_per_ticket ON runs (ticket) WHERE ended_at IS NULL;
CREATE INDEX runs_active ON runs (lease_expires_at) WHERE ended_at IS NULL;
CREATE INDEX runs_by_ticket ON runs (ticket, id);
CREATE INDEX runs_unsettled ON runs (id) WHERE exited_at IS NULL;

CREATE TABLE questions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket      TEXT   NOT NULL REFERENCES tickets (id),
    run         BIGINT NOT NULL REFERENCES runs (id),
    text        TEXT   NOT NULL,
    asked_at    BIGINT NOT NULL,
    answer      TEXT,
    answered_at BIGINT,
    answered_by TEXT,
    closed_at   BIGINT                               -- closed unanswered (the ticket left needs_input)
);

CREATE UNIQUE INDEX questions_one_open_per_ticket ON questions (ticket)
    WHERE answer IS NULL AND closed_at IS NULL;

-- The dispatcher's latest decision per ticket and lane; a decision is written (with an event)
-- only when it differs from the one stored.
CREATE TABLE dispatch_decisions (
    ticket      TEXT   NOT NULL,
    lane        TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    decision    TEXT   NOT NULL,                     -- JSON: {"runnable": bool, "reasons": [...]}
    decided_at  BIGINT NOT NULL,
    PRIMARY KEY (ticket, lane)
);

-- Dispatcher-wide facts that are not about one ticket (the capacity fact, decision cursors).
CREATE TABLE dispatcher_state (
    name        TEXT   PRIMARY KEY,
    value       TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Task runs: one row per execution of a task, each ending with exactly one outcome.
CREATE TABLE task_runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task        TEXT   NOT NULL,
    slot        BIGINT,                              -- the scheduled time; NULL for a manual run
    trigger     TEXT   NOT NULL,                     -- schedule | catch_up | manual
    node        TEXT   NOT NULL,                     -- HOST:PID of the process running it
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    pid         BIGINT,                              -- process group of a command task
    outcome     TEXT,                                -- acted | noop | skipped | degraded | failed
    reason      TEXT,
    counts      TEXT   NOT NULL DEFAULT '{}'         -- JSON object of integers
);

-- Each (task, scheduled time) fires once, whatever restarts or concurrent schedulers do.
CREATE UNIQUE INDEX task_runs_one_per_slot ON task_runs (task, slot) WHERE slot IS NOT NULL;
CREATE INDEX task_runs_by_task ON task_runs (task, id);
CREATE INDEX task_runs_open ON task_runs (task) WHERE ended_at IS NULL;

-- Counters taken inside the transaction that uses them (`UPDATE ... RETURNING value`), under the
-- row's lock: `ticket_number` (the N of KEY-N) and `event_seq` (events.seq). A rolled back
-- transaction gives its numbers back.
CREATE TABLE counters (
    name  TEXT   PRIMARY KEY,
    value BIGINT NOT NULL                            -- the last value taken
);

INSERT INTO counters (name, value) VALUES ('ticket_number', 0), ('event_seq', 0);
