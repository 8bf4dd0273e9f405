-- Usage, budgets and rate limits.

-- The usage ledger: per series (scope: instance | worker | pool | label | ticket, and its key;
-- '' for the instance) and 15-minute bucket of UTC time (milliseconds / 900000), what the runs
-- accounted in that bucket used, and the series' running totals up to and including the bucket
-- (cum_*). A window's usage is the latest running total minus the last one before the window.
CREATE TABLE usage_ledger (
    scope             TEXT    NOT NULL,
    key               TEXT    NOT NULL,
    bucket            BIGINT NOT NULL,
    runs              BIGINT NOT NULL,
    input_tokens      BIGINT NOT NULL,
    output_tokens     BIGINT NOT NULL,
    cached_tokens     BIGINT NOT NULL,
    cost_micros       BIGINT NOT NULL,   -- millionths of a US dollar
    run_ms            BIGINT NOT NULL,
    cum_runs          BIGINT NOT NULL,
    cum_input_tokens  BIGINT NOT NULL,
    cum_output_tokens BIGINT NOT NULL,
    cum_cached_tokens BIGINT NOT NULL,
    cum_cost_micros   BIGINT NOT NULL,
    cum_run_ms        BIGINT NOT NULL,
    PRIMARY KEY (scope, key, bucket)
);

CREATE INDEX usage_ledger_by_bucket ON usage_ledger (scope, bucket);

ALTER TABLE runs ADD COLUMN cached_tokens BIGINT;
ALTER TABLE runs ADD COLUMN usage_counted BOOLEAN NOT NULL DEFAULT FALSE;  -- in the ledger

-- A worker parked after its runtime reported a rate or usage limit.
CREATE TABLE worker_parks (
    worker   TEXT    PRIMARY KEY,
    until    BIGINT NOT NULL,
    reason   TEXT    NOT NULL,
    strikes  BIGINT NOT NULL,        -- limits in a row
    since    BIGINT NOT NULL,
    run      BIGINT
);

-- Circuit breakers by subject (worker:NAME).
CREATE TABLE breakers (
    subject    TEXT    PRIMARY KEY,
    failures   BIGINT NOT NULL,      -- failed runs in a row
    opened_at  BIGINT,               -- NULL: closed
    updated_at BIGINT NOT NULL
);

-- Budget alerts raised, once per budget, window and kind (soft | exhausted).
CREATE TABLE budget_alerts (
    budget       TEXT    NOT NULL,
    window_start BIGINT NOT NULL,
    kind         TEXT    NOT NULL,
    item         BIGINT,
    raised_at    BIGINT NOT NULL,
    PRIMARY KEY (budget, window_start, kind)
);
