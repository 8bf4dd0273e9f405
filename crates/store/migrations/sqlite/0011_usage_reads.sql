-- The holds' version: a number that moves, in the same transaction, with every write to what the
-- dispatcher's holds are read from (the ledger, live runs, the labels of tickets, parks,
-- breakers). A dispatch pass that finds it unchanged judges by the facts it read last time
-- instead of reading them again.
CREATE TABLE holds_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO holds_version (id, version) VALUES (1, 0);

CREATE TRIGGER holds_version_ledger_insert AFTER INSERT ON usage_ledger
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER holds_version_ledger_update AFTER UPDATE ON usage_ledger
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER holds_version_ledger_delete AFTER DELETE ON usage_ledger
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER holds_version_run_insert AFTER INSERT ON runs
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER holds_version_run_end AFTER UPDATE OF ended_at, worker, pool, ticket ON runs
WHEN OLD.ended_at IS NOT NEW.ended_at OR OLD.worker IS NOT NEW.worker
  OR OLD.pool IS NOT NEW.pool OR OLD.ticket IS NOT NEW.ticket
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER holds_version_run_delete AFTER DELETE ON runs
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER holds_version_labels AFTER UPDATE OF labels ON tickets
WHEN OLD.labels IS NOT NEW.labels
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER holds_version_park_insert AFTER INSERT ON worker_parks
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER holds_version_park_update AFTER UPDATE ON worker_parks
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER holds_version_park_delete AFTER DELETE ON worker_parks
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER holds_version_breaker_insert AFTER INSERT ON breakers
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER holds_version_breaker_update AFTER UPDATE ON breakers
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER holds_version_breaker_delete AFTER DELETE ON breakers
BEGIN UPDATE holds_version SET version = version + 1 WHERE id = 1; END;

-- Each series' totals: its first and last bucket and its running totals at the last one, kept
-- in the transaction that adds to the ledger. A window that starts at or before a series' first
-- bucket (the usual case for a ticket) takes its totals as they are; only a window starting
-- inside a series' history looks up the running total before it. No index on the buckets: a
-- report scans its scope's rows in key order (a secondary index would cost a lookup per row).
CREATE TABLE usage_totals (
    scope             TEXT    NOT NULL,
    key               TEXT    NOT NULL,
    first_bucket      INTEGER NOT NULL,
    last_bucket       INTEGER NOT NULL,
    cum_runs          INTEGER NOT NULL,
    cum_input_tokens  INTEGER NOT NULL,
    cum_output_tokens INTEGER NOT NULL,
    cum_cached_tokens INTEGER NOT NULL,
    cum_cost_micros   INTEGER NOT NULL,
    cum_run_ms        INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

INSERT INTO usage_totals
SELECT scope, key, MIN(bucket), MAX(bucket), SUM(runs), SUM(input_tokens), SUM(output_tokens),
       SUM(cached_tokens), SUM(cost_micros), SUM(run_ms)
FROM usage_ledger GROUP BY scope, key;
