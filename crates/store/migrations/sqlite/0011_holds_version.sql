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
