-- Usage, budgets and rate limits.

-- The usage ledger: per series (scope: instance | worker | pool | label | ticket, and its key;
-- '' for the instance) and 15-minute bucket of UTC time (milliseconds / 900000), what the runs
-- accounted in that bucket used, and the series' running totals up to and including the bucket
-- (cum_*). A window's usage is the latest running total minus the last one before the window.
CREATE TABLE usage_ledger (
    scope             TEXT    NOT NULL,
    key               TEXT    NOT NULL,
    bucket            INTEGER NOT NULL,
    runs              INTEGER NOT NULL,
    input_tokens      INTEGER NOT NULL,
    output_tokens     INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    cost_micros       INTEGER NOT NULL,   -- millionths of a US dollar
    run_ms            INTEGER NOT NULL,
    cum_runs          INTEGER NOT NULL,
    cum_input_tokens  INTEGER NOT NULL,
    cum_output_tokens INTEGER NOT NULL,
    cum_cached_tokens INTEGER NOT NULL,
    cum_cost_micros   INTEGER NOT NULL,
    cum_run_ms        INTEGER NOT NULL,
    PRIMARY KEY (scope, key, bucket)
) WITHOUT ROWID;

CREATE INDEX usage_ledger_by_bucket ON usage_ledger (scope, bucket);

ALTER TABLE runs ADD COLUMN cached_tokens INTEGER;
ALTER TABLE runs ADD COLUMN usage_counted INTEGER NOT NULL DEFAULT 0;  -- 1: in the ledger

-- A worker parked after its runtime reported a rate or usage limit.
CREATE TABLE worker_parks (
    worker   TEXT    PRIMARY KEY,
    until    INTEGER NOT NULL,
    reason   TEXT    NOT NULL,
    strikes  INTEGER NOT NULL,        -- limits in a row
    since    INTEGER NOT NULL,
    run      INTEGER
);

-- Circuit breakers by subject (worker:NAME).
CREATE TABLE breakers (
    subject    TEXT    PRIMARY KEY,
    failures   INTEGER NOT NULL,      -- failed runs in a row
    opened_at  INTEGER,               -- NULL: closed
    updated_at INTEGER NOT NULL
);

-- Budget alerts raised, once per budget, window and kind (soft | exhausted).
CREATE TABLE budget_alerts (
    budget       TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    item         INTEGER,
    raised_at    INTEGER NOT NULL,
    PRIMARY KEY (budget, window_start, kind)
);
