//! Usage: the ledger (maintained in the transaction that records a run's end, read over windows
//! by two running totals per series), workers parked by a rate limit, breakers, and the budget
//! alerts already raised.

use crate::{Change, Result};
use async_trait::async_trait;
use mission_core::breaker::{Breaker, BreakerPolicy, Verdict};
use mission_core::usage::{LedgerKey, ScopeKind, Usage, WorkerPark};
use mission_core::{Addressee, InboxId, Timestamp};

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// What holds workers back, read in ONE read transaction: each window's usage (and the live
    /// runs of its series), the parks and the breakers.
    async fn holds(&self, windows: &[WindowQuery]) -> Result<HoldFacts>;

    /// The holds' version: a number that moves in the same transaction as every write to what
    /// `holds` reads (the ledger, runs claimed or ended, tickets' labels, parks, breakers), so
    /// that facts read at a version still hold while it has not moved. `None` where the backend
    /// keeps no such number (the caller reads the holds every time).
    async fn holds_version(&self) -> Result<Option<i64>>;

    /// Usage per key of `scope` in buckets `since..until` (all when `None`), largest cost, then
    /// most tokens, first: the first `limit` keys (all when `None`), and how many keys used
    /// anything in the window. Read from each series' totals (`usage_totals`), looking a running
    /// total up only for a series whose history the window's ends cut through.
    async fn usage_by(
        &self,
        scope: ScopeKind,
        since: i64,
        until: Option<i64>,
        limit: Option<u32>,
    ) -> Result<UsageGroups>;

    /// `key`'s usage between each two consecutive `bounds` (buckets, ascending): one answer per
    /// span, from the running totals at each bound (one lookup per bound, whatever the spans'
    /// length) — a year of local days is 366 lookups, not 35,000 buckets.
    async fn usage_between(&self, key: &LedgerKey, bounds: &[i64]) -> Result<Vec<Usage>>;

    /// Records what an end with `verdict` did to `subject`'s breaker (a task's: `task_subject`;
    /// a worker's is kept by `end_run` itself), read and written in one transaction. Returns the
    /// breaker after, and whether this end opened it (an incident is due).
    async fn record_breaker(
        &self,
        subject: &str,
        verdict: Verdict,
        policy: &BreakerPolicy,
        at: Timestamp,
    ) -> Result<(Breaker, bool)>;

    /// Raises a budget's alert for one window, once: the first call for (budget, window, kind)
    /// creates an `alert` inbox item for `to` (with its event) and returns it; later calls
    /// return `None` and write nothing.
    async fn raise_budget_alert(
        &self,
        alert: &BudgetAlert,
        to: &Addressee,
        change: &Change,
    ) -> Result<Option<InboxId>>;
}

/// The usage of one series since a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowQuery {
    pub key: LedgerKey,
    /// The window's first bucket.
    pub since: i64,
    /// Also find the first bucket of the window that has usage (a rolling window's reset).
    pub first_bucket: bool,
}

/// What the ledger says about a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowUse {
    pub used: Usage,
    /// Live runs of the series (the ticket's labels as they are now, for a label).
    pub live_runs: i64,
    pub first_bucket: Option<i64>,
}

/// The answer of `holds`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HoldFacts {
    /// The holds' version these facts were read at (`holds_version`), in the same snapshot.
    pub version: Option<i64>,
    pub windows: Vec<WindowUse>,
    pub parks: Vec<WorkerPark>,
    /// Breakers by subject (`worker:NAME`, `task:NAME`), closed ones with failures included.
    pub breakers: Vec<(String, Breaker)>,
}

/// The answer of `usage_by`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageGroups {
    /// The first keys by usage, with their usage in the window.
    pub rows: Vec<(String, Usage)>,
    /// How many keys used anything in the window (`rows` holds the first `limit` of them).
    pub groups: i64,
}

/// A budget's alert for one window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetAlert {
    pub budget: String,
    /// The window's first instant (milliseconds), which keys "once per window".
    pub window_start: i64,
    /// `soft` or `exhausted`.
    pub kind: String,
    pub text: String,
}

/// The breaker subject of a worker.
pub fn worker_subject(worker: &str) -> String {
    format!("worker:{worker}")
}

/// The breaker subject of a scheduled task.
pub fn task_subject(task: &str) -> String {
    format!("task:{task}")
}

/// The ledger's amounts per bucket, as stored (both backends).
pub(crate) const AMOUNTS: &str =
    "runs, input_tokens, output_tokens, cached_tokens, cost_micros, run_ms";
/// The ledger's running totals, as stored (both backends).
pub(crate) const TOTALS: &str =
    "cum_runs, cum_input_tokens, cum_output_tokens, cum_cached_tokens, cum_cost_micros, cum_run_ms";

/// The one statement that reads every window of a dispatch pass (`holds`): per window, the
/// running totals at the series' last bucket (columns 0-5) and at its last bucket before the
/// window (6-11; their difference is the window's use), the window's first bucket with usage
/// when asked (12), and the series' live runs (13). `values` are the windows' rows
/// `(i, scope, key, since, want_first)`, `cast` what makes a total a 64-bit integer, `has_label`
/// the backend's test that ticket `t`'s labels hold `q.key`.
pub(crate) fn windows_use_sql(values: &str, cast: &str, has_label: &str) -> String {
    let totals = |alias: &str| {
        TOTALS
            .split(", ")
            .map(|c| format!("COALESCE({alias}.{c}, 0){cast}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "WITH q (i, scope, key, since, want_first) AS (VALUES {values}) \
         SELECT {latest}, {before}, \
           CASE WHEN q.want_first THEN (SELECT MIN(u.bucket) FROM usage_ledger u \
             WHERE u.scope = q.scope AND u.key = q.key AND u.bucket >= q.since) END, \
           CASE q.scope \
             WHEN 'instance' THEN (SELECT COUNT(*) FROM runs r WHERE r.ended_at IS NULL) \
             WHEN 'worker' THEN (SELECT COUNT(*) FROM runs r WHERE r.ended_at IS NULL AND r.worker = q.key) \
             WHEN 'pool' THEN (SELECT COUNT(*) FROM runs r WHERE r.ended_at IS NULL AND r.pool = q.key) \
             WHEN 'label' THEN (SELECT COUNT(*) FROM runs r JOIN tickets t ON t.id = r.ticket \
               WHERE r.ended_at IS NULL AND {has_label}) \
             ELSE (SELECT COUNT(*) FROM runs r WHERE r.ended_at IS NULL AND r.ticket = q.key) END \
         FROM q \
         LEFT JOIN usage_ledger l ON l.scope = q.scope AND l.key = q.key AND l.bucket = \
           (SELECT MAX(m.bucket) FROM usage_ledger m WHERE m.scope = q.scope AND m.key = q.key) \
         LEFT JOIN usage_ledger b ON b.scope = q.scope AND b.key = q.key AND b.bucket = \
           (SELECT MAX(m.bucket) FROM usage_ledger m WHERE m.scope = q.scope AND m.key = q.key \
            AND m.bucket < q.since) \
         ORDER BY q.i",
        latest = totals("l"),
        before = totals("b"),
    )
}

/// The ledger's amount columns, one by one.
const AMOUNT_COLUMNS: [&str; 6] = [
    "runs",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_micros",
    "run_ms",
];

/// The statement that adds a run's amounts (parameters 4-9) to a series' totals (1: scope,
/// 2: key, 3: the bucket), both backends: `p(n)` is the backend's n-th parameter, `least` and
/// `greatest` its two-argument minimum and maximum.
pub(crate) fn totals_add_sql(p: impl Fn(usize) -> String, least: &str, greatest: &str) -> String {
    let values: Vec<String> = (4..10).map(&p).collect();
    let sums: Vec<String> = AMOUNT_COLUMNS
        .iter()
        .map(|c| format!("cum_{c} = usage_totals.cum_{c} + excluded.cum_{c}"))
        .collect();
    format!(
        "INSERT INTO usage_totals (scope, key, first_bucket, last_bucket, {TOTALS}) \
         VALUES ({scope}, {key}, {bucket}, {bucket}, {values}) \
         ON CONFLICT (scope, key) DO UPDATE SET \
         first_bucket = {least}(usage_totals.first_bucket, excluded.first_bucket), \
         last_bucket = {greatest}(usage_totals.last_bucket, excluded.last_bucket), {sums}",
        scope = p(1),
        key = p(2),
        bucket = p(3),
        values = values.join(", "),
        sums = sums.join(", "),
    )
}

/// The statements of `usage_by`, both backends (`p(n)` the n-th parameter: 1 scope, 2 since,
/// 3 until, 4 limit). A series whose buckets all lie in the window (the usual case: a ticket's
/// runs within a report's months) used its totals there — read as they are, the first `limit` by
/// cost, or counted. A series the window's ends cut through used the running total at its last
/// bucket before `until` less the one at its last bucket before `since` — computed for each such
/// series, by lookups (`UsageRead::Cut`). `usage_by` merges the two.
pub(crate) fn usage_by_sql(p: impl Fn(usize) -> String, read: UsageRead) -> String {
    let (scope, since, until, limit) = (p(1), p(2), p(3), p(4));
    let order = "ORDER BY cost_micros DESC, input_tokens + output_tokens DESC, key";
    let whole =
        format!("t.scope = {scope} AND t.first_bucket >= {since} AND t.last_bucket < {until}");
    match read {
        UsageRead::Whole => {
            let totals: Vec<String> = AMOUNT_COLUMNS
                .iter()
                .map(|c| format!("t.cum_{c} AS {c}"))
                .collect();
            return format!(
                "SELECT key, {AMOUNTS} FROM (SELECT t.key AS key, {} FROM usage_totals t \
                 WHERE {whole}) s {order} LIMIT {limit}",
                totals.join(", ")
            );
        }
        UsageRead::WholeCount => {
            return format!("SELECT COUNT(*) FROM usage_totals t WHERE {whole}");
        }
        UsageRead::Cut => {}
    }
    let differences: Vec<String> = AMOUNT_COLUMNS
        .iter()
        .map(|c| {
            format!(
                "CASE WHEN w.last_bucket < {until} THEN w.cum_{c} ELSE u.cum_{c} END \
                 - COALESCE(b.cum_{c}, 0) AS {c}"
            )
        })
        .collect();
    let totals: Vec<String> = AMOUNT_COLUMNS
        .iter()
        .map(|c| format!("t.cum_{c}"))
        .collect();
    let last_before = |bound: &str| {
        format!(
            "(SELECT MAX(m.bucket) FROM usage_ledger m \
             WHERE m.scope = t.scope AND m.key = t.key AND m.bucket < {bound})"
        )
    };
    format!(
        "WITH w AS (SELECT t.key, t.last_bucket, {totals}, \
           CASE WHEN t.first_bucket >= {since} THEN NULL ELSE {from_bucket} END AS from_bucket, \
           CASE WHEN t.last_bucket < {until} THEN NULL ELSE {to_bucket} END AS to_bucket \
           FROM usage_totals t \
           WHERE t.scope = {scope} AND t.last_bucket >= {since} AND t.first_bucket < {until} \
             AND (t.first_bucket < {since} OR t.last_bucket >= {until})), \
         d AS (SELECT w.key, {differences} FROM w \
           LEFT JOIN usage_ledger b ON b.scope = {scope} AND b.key = w.key AND b.bucket = w.from_bucket \
           LEFT JOIN usage_ledger u ON u.scope = {scope} AND u.key = w.key AND u.bucket = w.to_bucket) \
         SELECT key, {AMOUNTS} FROM d WHERE runs > 0 {order}",
        totals = totals.join(", "),
        from_bucket = last_before(&since),
        to_bucket = last_before(&until),
        differences = differences.join(", "),
    )
}

/// Which of `usage_by`'s statements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UsageRead {
    /// The series wholly inside the window with their totals, the first `limit` by cost.
    Whole,
    /// How many series lie wholly inside the window (each used something: a bucket has a run).
    WholeCount,
    /// Every series the window cuts through that used something inside it (no limit).
    Cut,
}

/// `usage_by`'s answer from its two reads: the first `limit` of both by cost (then tokens, then
/// key), and how many keys there are (`whole_count` those wholly inside the window).
pub(crate) fn merge_usage(
    mut whole: Vec<(String, Usage)>,
    cut: Vec<(String, Usage)>,
    whole_count: i64,
    limit: Option<u32>,
) -> UsageGroups {
    let groups = whole_count + cut.len() as i64;
    whole.extend(cut);
    whole.sort_by(|(ka, a), (kb, b)| {
        b.cost_micros
            .cmp(&a.cost_micros)
            .then((b.input_tokens + b.output_tokens).cmp(&(a.input_tokens + a.output_tokens)))
            .then(ka.cmp(kb))
    });
    if let Some(limit) = limit {
        whole.truncate(limit as usize);
    }
    UsageGroups {
        rows: whole,
        groups,
    }
}

/// The statement of `usage_between`, both backends (`p(1)` the scope's parameter, `p(2)` the
/// key's; `cast` what makes a total a 64-bit integer): per bound, in order, the series' running
/// totals at its last bucket before it (zeros before its first).
pub(crate) fn totals_before_sql(p: impl Fn(usize) -> String, bounds: &[i64], cast: &str) -> String {
    let values: Vec<String> = bounds
        .iter()
        .enumerate()
        .map(|(i, bound)| format!("({i}, {bound})"))
        .collect();
    let totals: Vec<String> = TOTALS
        .split(", ")
        .map(|c| format!("COALESCE(l.{c}, 0){cast}"))
        .collect();
    let (scope, key) = (p(1), p(2));
    format!(
        "WITH q (i, b) AS (VALUES {values}) SELECT {totals} FROM q \
         LEFT JOIN usage_ledger l ON l.scope = {scope} AND l.key = {key} AND l.bucket = \
           (SELECT MAX(m.bucket) FROM usage_ledger m \
            WHERE m.scope = {scope} AND m.key = {key} AND m.bucket < q.b) \
         ORDER BY q.i",
        values = values.join(", "),
        totals = totals.join(", "),
    )
}

/// The spans' usages from the running totals at their bounds (`totals_before_sql`'s rows).
pub(crate) fn spans(totals: &[Usage]) -> Vec<Usage> {
    totals.windows(2).map(|w| w[1].minus(w[0])).collect()
}
