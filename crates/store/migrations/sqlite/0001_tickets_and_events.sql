-- Tickets, their dependencies, and the event log.
-- Times are integer milliseconds since the Unix epoch. JSON is stored as text.

CREATE TABLE tickets (
    number          INTEGER PRIMARY KEY,          -- the N of KEY-N, allocated in the creating transaction
    id              TEXT    NOT NULL UNIQUE,      -- KEY-N
    title           TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    assignee        TEXT,
    owner           TEXT,
    labels          TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings, sorted
    priority        INTEGER NOT NULL DEFAULT 0,    -- higher runs first
    evidence_policy TEXT    NOT NULL,
    repo            TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    state_since     INTEGER NOT NULL,              -- when the ticket entered its current state
    version         INTEGER NOT NULL DEFAULT 1     -- +1 on every change
);

CREATE INDEX tickets_by_state ON tickets (state, priority DESC, number);
CREATE INDEX tickets_by_assignee ON tickets (assignee, state);
CREATE INDEX tickets_by_priority ON tickets (priority DESC, number);

CREATE TABLE ticket_dependencies (
    ticket     TEXT NOT NULL REFERENCES tickets (id),
    depends_on TEXT NOT NULL REFERENCES tickets (id),
    PRIMARY KEY (ticket, depends_on)
);

CREATE INDEX ticket_dependencies_reverse ON ticket_dependencies (depends_on);

CREATE TABLE events (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,      -- strictly increasing, never reused
    at     INTEGER NOT NULL,
    kind   TEXT    NOT NULL,
    ticket TEXT,                                   -- KEY-N when the event is about a ticket
    actor  TEXT    NOT NULL,
    data   TEXT    NOT NULL                        -- JSON object
);

CREATE INDEX events_by_ticket ON events (ticket, seq);

-- The event log is append-only, enforced by the database itself.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
