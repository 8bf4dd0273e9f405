-- Evidence, review outcomes and requests, and the inbox with its actions (SQLite's version 7).
-- JSON is stored as text, as in the rest of the schema.

-- Evidence as the harness observed it, with its latest verification.
CREATE TABLE evidence (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket      TEXT   NOT NULL REFERENCES tickets (id),
    kind        TEXT   NOT NULL,                -- commit | test | route | artifact
    subject     TEXT,                           -- a test's or route's name, an artifact's path
    evidence    TEXT   NOT NULL,                -- JSON, tagged by kind
    recorded_at BIGINT NOT NULL,
    recorded_by TEXT   NOT NULL,                -- harness, or run:KEY-N#ATTEMPT
    status      TEXT   NOT NULL,                -- verified | failed
    verified_at BIGINT NOT NULL,
    failure     TEXT                            -- why, when failed
);

CREATE INDEX evidence_by_ticket ON evidence (ticket, id);

-- A reviewer worker's run, asked for by auto-review: its token is how the verdict finds it.
CREATE TABLE review_requests (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket       TEXT   NOT NULL REFERENCES tickets (id),
    attempt      BIGINT NOT NULL,               -- the attempt under review
    reviewer     TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL UNIQUE,
    requested_at BIGINT NOT NULL,
    closed_at    BIGINT                         -- a verdict was given, or the run ended
);

CREATE INDEX review_requests_open ON review_requests (ticket) WHERE closed_at IS NULL;

-- Review outcomes: approved, rejected, skipped_oversized. The round is the attempt reviewed.
CREATE TABLE reviews (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket   TEXT   NOT NULL REFERENCES tickets (id),
    attempt  BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    outcome  TEXT   NOT NULL,
    record   TEXT   NOT NULL                    -- JSON ReviewRecord
);

CREATE INDEX reviews_by_ticket ON reviews (ticket, attempt, id);

CREATE TABLE inbox_items (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                TEXT   NOT NULL,        -- question | review_request | approval | alert | failed_ticket
    ticket              TEXT   REFERENCES tickets (id),
    addressee           TEXT   NOT NULL,        -- channel:NAME | worker:NAME
    text                TEXT   NOT NULL,
    created_at          BIGINT NOT NULL,
    deliveries          BIGINT NOT NULL DEFAULT 0,
    status              TEXT   NOT NULL,        -- pending | delivered | acted | failed
    lease_expires_at    BIGINT,                 -- while delivered
    delivery_token_hash TEXT   UNIQUE,          -- the worker run the item is delivered to
    failure             TEXT,
    failed_at           BIGINT,
    question            BIGINT REFERENCES questions (id)   -- a question item's question
);

CREATE INDEX inbox_by_status ON inbox_items (status, id);
CREATE INDEX inbox_by_ticket ON inbox_items (ticket, id);
CREATE INDEX inbox_leases ON inbox_items (lease_expires_at) WHERE status = 'delivered';

-- The one action of an acted item.
CREATE TABLE inbox_actions (
    item   BIGINT PRIMARY KEY REFERENCES inbox_items (id),
    kind   TEXT   NOT NULL,
    ticket TEXT,
    actor  TEXT   NOT NULL,
    text   TEXT,
    at     BIGINT NOT NULL
);

-- An item is acted only when its action is already written (in the same transaction); a settled
-- item (acted or failed) never changes again, nor goes away.
CREATE FUNCTION inbox_items_keep_their_rules() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status IN ('acted', 'failed') THEN
        RAISE EXCEPTION 'a settled inbox item does not change';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF NEW.status = 'acted'
        AND NOT EXISTS (SELECT 1 FROM inbox_actions WHERE item = NEW.id) THEN
        RAISE EXCEPTION 'an inbox item is acted only together with its action';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER inbox_items_rules BEFORE INSERT OR UPDATE OR DELETE ON inbox_items
    FOR EACH ROW EXECUTE FUNCTION inbox_items_keep_their_rules();

CREATE FUNCTION inbox_items_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'inbox items are not truncated';
END;
$$;

CREATE TRIGGER inbox_items_no_truncate BEFORE TRUNCATE ON inbox_items
    FOR EACH STATEMENT EXECUTE FUNCTION inbox_items_no_truncate();

-- An action is written once and kept.
CREATE FUNCTION inbox_actions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'inbox actions are append-only';
END;
$$;

CREATE TRIGGER inbox_actions_no_change BEFORE UPDATE OR DELETE ON inbox_actions
    FOR EACH ROW EXECUTE FUNCTION inbox_actions_append_only();
CREATE TRIGGER inbox_actions_no_truncate BEFORE TRUNCATE ON inbox_actions
    FOR EACH STATEMENT EXECUTE FUNCTION inbox_actions_append_only();
