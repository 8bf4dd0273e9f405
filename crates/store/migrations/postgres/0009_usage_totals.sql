-- Each series' totals: its first and last bucket and its running totals at the last one, kept
-- in the transaction that adds to the ledger. A window that starts at or before a series' first
-- bucket (the usual case for a ticket) takes its totals as they are; only a window starting
-- inside a series' history looks up the running total before it. No index on the buckets: a
-- report scans its scope's rows in key order (a secondary index would cost a lookup per row).
CREATE TABLE usage_totals (
    scope             TEXT   NOT NULL,
    key               TEXT   NOT NULL,
    first_bucket      BIGINT NOT NULL,
    last_bucket       BIGINT NOT NULL,
    cum_runs          BIGINT NOT NULL,
    cum_input_tokens  BIGINT NOT NULL,
    cum_output_tokens BIGINT NOT NULL,
    cum_cached_tokens BIGINT NOT NULL,
    cum_cost_micros   BIGINT NOT NULL,
    cum_run_ms        BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);

INSERT INTO usage_totals
SELECT scope, key, MIN(bucket), MAX(bucket), SUM(runs), SUM(input_tokens), SUM(output_tokens),
       SUM(cached_tokens), SUM(cost_micros), SUM(run_ms)
FROM usage_ledger GROUP BY scope, key;
