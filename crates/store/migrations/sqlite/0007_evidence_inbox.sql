-- Evidence, review outcomes and requests, and the inbox with its actions.

-- Evidence as the harness observed it, with its latest verification.
CREATE TABLE evidence (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket      TEXT    NOT NULL REFERENCES tickets (id),
    kind        TEXT    NOT NULL,               -- commit | test | route | artifact
    subject     TEXT,                           -- a test's or route's name, an artifact's path
    evidence    TEXT    NOT NULL,               -- JSON, tagged by kind
    recorded_at INTEGER NOT NULL,
    recorded_by TEXT    NOT NULL,               -- harness, or run:KEY-N#ATTEMPT
    status      TEXT    NOT NULL,               -- verified | failed
    verified_at INTEGER NOT NULL,
    failure     TEXT                            -- why, when failed
);

CREATE INDEX evidence_by_ticket ON evidence (ticket, id);

-- A reviewer worker's run, asked for by auto-review: its token is how the verdict finds it.
CREATE TABLE review_requests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket       TEXT    NOT NULL REFERENCES tickets (id),
    attempt      INTEGER NOT NULL,              -- the attempt under review
    reviewer     TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    requested_at INTEGER NOT NULL,
    closed_at    INTEGER                        -- a verdict was given, or the run ended
);

-- Review outcomes: approved, rejected, skipped_oversized. The round is the attempt reviewed.
CREATE TABLE reviews (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket   TEXT    NOT NULL REFERENCES tickets (id),
    attempt  INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    outcome  TEXT    NOT NULL,
    record   TEXT    NOT NULL                   -- JSON ReviewRecord
);

CREATE INDEX reviews_by_ticket ON reviews (ticket, attempt, id);

CREATE TABLE inbox_items (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind                TEXT    NOT NULL,       -- question | review_request | approval | alert | failed_ticket
    ticket              TEXT    REFERENCES tickets (id),
    addressee           TEXT    NOT NULL,       -- channel:NAME | worker:NAME
    text                TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    deliveries          INTEGER NOT NULL DEFAULT 0,
    status              TEXT    NOT NULL,       -- pending | delivered | acted | failed
    lease_expires_at    INTEGER,                -- while delivered
    delivery_token_hash TEXT UNIQUE,            -- the worker run the item is delivered to
    failure             TEXT,
    failed_at           INTEGER,
    question            INTEGER REFERENCES questions (id)   -- a question item's question
);

CREATE INDEX inbox_by_status ON inbox_items (status, id);
CREATE INDEX inbox_by_ticket ON inbox_items (ticket, id);
CREATE INDEX inbox_leases ON inbox_items (lease_expires_at) WHERE status = 'delivered';

-- The one action of an acted item.
CREATE TABLE inbox_actions (
    item   INTEGER PRIMARY KEY REFERENCES inbox_items (id),
    kind   TEXT    NOT NULL,
    ticket TEXT,
    actor  TEXT    NOT NULL,
    text   TEXT,
    at     INTEGER NOT NULL
);

-- An item becomes acted only when its action is already written (in the same transaction).
CREATE TRIGGER inbox_acted_needs_its_action BEFORE UPDATE OF status ON inbox_items
WHEN NEW.status = 'acted' AND NOT EXISTS (SELECT 1 FROM inbox_actions WHERE item = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'an inbox item is acted only together with its action');
END;

-- A settled item (acted or failed) never changes again.
CREATE TRIGGER inbox_settled_items_stay BEFORE UPDATE ON inbox_items
WHEN OLD.status IN ('acted', 'failed')
BEGIN
    SELECT RAISE(ABORT, 'a settled inbox item does not change');
END;

-- An action is written once and kept.
CREATE TRIGGER inbox_actions_no_update BEFORE UPDATE ON inbox_actions
BEGIN
    SELECT RAISE(ABORT, 'inbox actions are append-only');
END;

CREATE TRIGGER inbox_actions_no_delete BEFORE DELETE ON inbox_actions
BEGIN
    SELECT RAISE(ABORT, 'inbox actions are append-only');
END;
