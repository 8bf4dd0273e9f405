//! Usage in PostgreSQL: the ledger's running totals, parks, breakers and budget alerts.

use super::PgStore;
use super::inbox::insert_item;
use super::rows::text;
use crate::usage::{
    AMOUNTS, TOTALS, UsageRead, merge_usage, spans, totals_add_sql, totals_before_sql,
    usage_by_sql, windows_use_sql,
};
use crate::{
    BudgetAlert, Change, HoldFacts, Result, UsageGroups, UsageStore, WindowQuery, WindowUse,
    worker_subject,
};
use async_trait::async_trait;
use mission_core::breaker::{Breaker, BreakerPolicy, Verdict};
use mission_core::usage::{
    Accounting, Figures, LedgerKey, RunEndFacts, ScopeKind, Usage, WorkerPark, account, bucket_of,
    ledger_keys,
};
use mission_core::{
    Addressee, InboxId, InboxKind, Name, NewInboxItem, RetryPolicy, Run, RunId, Timestamp,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

fn usage_at(row: &PgRow, at: usize) -> Result<Usage> {
    Ok(Usage {
        runs: row.try_get(at)?,
        input_tokens: row.try_get(at + 1)?,
        output_tokens: row.try_get(at + 2)?,
        cached_tokens: row.try_get(at + 3)?,
        cost_micros: row.try_get(at + 4)?,
        run_ms: row.try_get(at + 5)?,
    })
}

/// The running totals of a series at its last bucket before `before` (all: `None`).
async fn total(conn: &mut PgConnection, key: &LedgerKey, before: Option<i64>) -> Result<Usage> {
    let sql = format!(
        "SELECT {TOTALS} FROM usage_ledger WHERE scope = $1 AND key = $2 AND bucket < $3 \
         ORDER BY bucket DESC LIMIT 1"
    );
    let row = sqlx::query(&sql)
        .bind(key.scope.as_str())
        .bind(&key.key)
        .bind(before.unwrap_or(i64::MAX))
        .fetch_optional(&mut *conn)
        .await?;
    row.map_or(Ok(Usage::default()), |row| usage_at(&row, 0))
}

/// Binds a usage's six amounts, in the ledger's column order.
trait BindUsage {
    fn bind_usage(self, usage: Usage) -> Self;
}

impl<'q> BindUsage for sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    fn bind_usage(self, usage: Usage) -> Self {
        self.bind(usage.runs)
            .bind(usage.input_tokens)
            .bind(usage.output_tokens)
            .bind(usage.cached_tokens)
            .bind(usage.cost_micros)
            .bind(usage.run_ms)
    }
}

/// Adds `delta` to `keys`' series at `bucket`: the bucket's amounts, its running totals and those
/// of any later bucket (a run accounted out of order).
pub(super) async fn ledger_add(
    conn: &mut PgConnection,
    keys: &[LedgerKey],
    bucket: i64,
    delta: Usage,
) -> Result<()> {
    for key in keys {
        let before = total(conn, key, Some(bucket)).await?;
        let cum = before.plus(delta);
        let sql = format!(
            "INSERT INTO usage_ledger (scope, key, bucket, {AMOUNTS}, {TOTALS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (scope, key, bucket) DO UPDATE SET runs = usage_ledger.runs + excluded.runs, \
             input_tokens = usage_ledger.input_tokens + excluded.input_tokens, output_tokens = usage_ledger.output_tokens + excluded.output_tokens, \
             cached_tokens = usage_ledger.cached_tokens + excluded.cached_tokens, cost_micros = usage_ledger.cost_micros + excluded.cost_micros, run_ms = usage_ledger.run_ms + excluded.run_ms, \
             cum_runs = usage_ledger.cum_runs + excluded.runs, cum_input_tokens = usage_ledger.cum_input_tokens + excluded.input_tokens, \
             cum_output_tokens = usage_ledger.cum_output_tokens + excluded.output_tokens, cum_cached_tokens = usage_ledger.cum_cached_tokens + excluded.cached_tokens, \
             cum_cost_micros = usage_ledger.cum_cost_micros + excluded.cost_micros, cum_run_ms = usage_ledger.cum_run_ms + excluded.run_ms"
        );
        sqlx::query(&sql)
            .bind(key.scope.as_str())
            .bind(&key.key)
            .bind(bucket)
            .bind_usage(delta)
            .bind_usage(cum)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE usage_ledger SET cum_runs = cum_runs + $1, cum_input_tokens = cum_input_tokens + $2, \
             cum_output_tokens = cum_output_tokens + $3, cum_cached_tokens = cum_cached_tokens + $4, \
             cum_cost_micros = cum_cost_micros + $5, cum_run_ms = cum_run_ms + $6 \
             WHERE scope = $7 AND key = $8 AND bucket > $9",
        )
        .bind_usage(delta)
        .bind(key.scope.as_str())
        .bind(&key.key)
        .bind(bucket)
        .execute(&mut *conn)
        .await?;
        sqlx::query(&totals_add_sql(|n| format!("${n}"), "LEAST", "GREATEST"))
            .bind(key.scope.as_str())
            .bind(&key.key)
            .bind(bucket)
            .bind_usage(delta)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A run's stored figures, and whether it is in the ledger already.
pub(super) async fn run_figures(conn: &mut PgConnection, run: RunId) -> Result<(Figures, bool)> {
    let row = sqlx::query(
        "SELECT input_tokens, output_tokens, cached_tokens, cost_usd, usage_counted FROM runs WHERE id = $1",
    )
    .bind(run.get())
    .fetch_one(&mut *conn)
    .await?;
    let counted: bool = row.try_get(4)?;
    Ok((
        Figures {
            input_tokens: row.try_get(0)?,
            output_tokens: row.try_get(1)?,
            cached_tokens: row.try_get(2)?,
            cost_usd: row.try_get(3)?,
        },
        counted,
    ))
}

fn decode_park(row: &PgRow) -> Result<WorkerPark> {
    let worker: String = row.try_get(0)?;
    Ok(WorkerPark {
        worker: Name::parse(&worker).map_err(|e| crate::StoreError::backend(e.to_string()))?,
        until: Timestamp::from_millis(row.try_get(1)?),
        reason: row.try_get(2)?,
        strikes: u32::try_from(row.try_get::<i64, _>(3)?).unwrap_or(u32::MAX),
        since: Timestamp::from_millis(row.try_get(4)?),
        run: row.try_get(5)?,
    })
}

const PARK_COLUMNS: &str = "worker, until, reason, strikes, since, run";

async fn breaker_of(conn: &mut PgConnection, subject: &str) -> Result<Breaker> {
    let row = sqlx::query("SELECT failures, opened_at FROM breakers WHERE subject = $1")
        .bind(subject)
        .fetch_optional(&mut *conn)
        .await?;
    row.map_or(Ok(Breaker::default()), |row| {
        Ok(Breaker {
            failures: u32::try_from(row.try_get::<i64, _>(0)?).unwrap_or(u32::MAX),
            opened_at: row
                .try_get::<Option<i64>, _>(1)?
                .map(Timestamp::from_millis),
        })
    })
}

/// Stores `subject`'s breaker as it is now.
async fn upsert_breaker(
    conn: &mut PgConnection,
    subject: &str,
    breaker: &Breaker,
    at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO breakers (subject, failures, opened_at, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (subject) DO UPDATE SET failures = excluded.failures, \
         opened_at = excluded.opened_at, updated_at = excluded.updated_at",
    )
    .bind(subject)
    .bind(i64::from(breaker.failures))
    .bind(breaker.opened_at.map(|t| t.as_millis()))
    .bind(at.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The accounting of a run's end, in the ending transaction: `before` is what `run_figures` said
/// before the end was recorded, `run` the run after it.
pub(super) async fn account_run_end(
    conn: &mut PgConnection,
    before: (Figures, bool),
    run: &Run,
    labels: &[String],
    limit_reset: Option<Timestamp>,
    retry: &RetryPolicy,
    change: &Change,
) -> Result<Accounting> {
    let (after, _) = run_figures(conn, run.id).await?;
    let sql = format!("SELECT {PARK_COLUMNS} FROM worker_parks WHERE worker = $1");
    let park = sqlx::query(&sql)
        .bind(run.worker.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| decode_park(&row))
        .transpose()?;
    let subject = worker_subject(run.worker.as_str());
    let breaker = breaker_of(conn, &subject).await?;
    let accounting = account(
        &RunEndFacts {
            run,
            before: before.0,
            after,
            counted: before.1,
            limit_reset,
            park: park.as_ref(),
            breaker,
            now: change.at,
        },
        retry,
    );
    if !accounting.usage.is_zero() {
        let keys = ledger_keys(run.worker.as_str(), &run.pool, labels, &run.ticket);
        ledger_add(conn, &keys, bucket_of(change.at), accounting.usage).await?;
    }
    if !before.1 {
        sqlx::query("UPDATE runs SET usage_counted = TRUE WHERE id = $1")
            .bind(run.id.get())
            .execute(&mut *conn)
            .await?;
    }
    if let Some(park) = &accounting.park {
        sqlx::query(
            "INSERT INTO worker_parks (worker, until, reason, strikes, since, run) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (worker) DO UPDATE SET until = excluded.until, reason = excluded.reason, \
             strikes = excluded.strikes, since = excluded.since, run = excluded.run",
        )
        .bind(park.worker.as_str())
        .bind(park.until.as_millis())
        .bind(text(&park.reason))
        .bind(i64::from(park.strikes))
        .bind(park.since.as_millis())
        .bind(park.run)
        .execute(&mut *conn)
        .await?;
    }
    if let Some((breaker, _)) = &accounting.breaker {
        upsert_breaker(conn, &subject, breaker, change.at).await?;
    }
    Ok(accounting)
}

/// Every window's use in one statement (a dispatch pass reads them all, so one round trip, not
/// four per budget): per window, the running totals at the series' last bucket and at its last
/// bucket before the window (their difference is the window's use), the window's first bucket
/// with usage when asked, and the series' live runs.
async fn windows_use(conn: &mut PgConnection, windows: &[WindowQuery]) -> Result<Vec<WindowUse>> {
    if windows.is_empty() {
        return Ok(Vec::new());
    }
    let values = (0..windows.len())
        .map(|i| {
            let n = i * 5;
            format!(
                "(${}::BIGINT, ${}::TEXT, ${}::TEXT, ${}::BIGINT, ${}::BOOLEAN)",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = windows_use_sql(&values, "::BIGINT", "jsonb_exists(t.labels::jsonb, q.key)");
    let mut query = sqlx::query(&sql);
    for (i, window) in windows.iter().enumerate() {
        query = query
            .bind(i as i64)
            .bind(window.key.scope.as_str())
            .bind(&window.key.key)
            .bind(window.since)
            .bind(window.first_bucket);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            Ok(WindowUse {
                used: usage_at(row, 0)?.minus(usage_at(row, 6)?),
                first_bucket: row.try_get(12)?,
                live_runs: row.try_get(13)?,
            })
        })
        .collect()
}

#[async_trait]
impl UsageStore for PgStore {
    async fn holds(&self, windows: &[WindowQuery]) -> Result<HoldFacts> {
        // The parks and the breakers in one statement (one snapshot); with budgets, their
        // windows' use in the same read transaction.
        let sql = format!(
            "SELECT {PARK_COLUMNS}, NULL::BIGINT AS failures, NULL::BIGINT AS opened_at, 0 AS kind \
             FROM worker_parks UNION ALL \
             SELECT subject, NULL, NULL, NULL, NULL, NULL, failures, opened_at, 1 FROM breakers \
             ORDER BY 9, 1"
        );
        let (windows, rows) = if windows.is_empty() {
            (Vec::new(), sqlx::query(&sql).fetch_all(&self.pool).await?)
        } else {
            let mut tx = self.read_tx().await?;
            let used = windows_use(&mut tx, windows).await?;
            let rows = sqlx::query(&sql).fetch_all(&mut *tx).await?;
            tx.commit().await?;
            (used, rows)
        };
        let mut facts = HoldFacts {
            windows,
            ..HoldFacts::default()
        };
        for row in rows {
            if row.try_get::<i32, _>(8)? == 0 {
                facts.parks.push(decode_park(&row)?);
                continue;
            }
            facts.breakers.push((
                row.try_get(0)?,
                Breaker {
                    failures: u32::try_from(row.try_get::<i64, _>(6)?).unwrap_or(u32::MAX),
                    opened_at: row
                        .try_get::<Option<i64>, _>(7)?
                        .map(Timestamp::from_millis),
                },
            ));
        }
        Ok(facts)
    }

    /// Not kept on PostgreSQL: one row every claim and run end would update is a lock that
    /// several nodes' writers would queue on (and take in varying order with the event counter).
    async fn holds_version(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    async fn usage_by(
        &self,
        scope: ScopeKind,
        since: i64,
        until: Option<i64>,
        limit: Option<u32>,
    ) -> Result<UsageGroups> {
        let until = until.unwrap_or(i64::MAX);
        let wanted = limit.map_or(i64::MAX, i64::from);
        let read = |read: UsageRead| usage_by_sql(|n| format!("${n}"), read);
        let decode = |rows: Vec<PgRow>| -> Result<Vec<(String, Usage)>> {
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, usage_at(row, 1)?)))
                .collect()
        };
        let whole = decode(
            sqlx::query(&read(UsageRead::Whole))
                .bind(scope.as_str())
                .bind(since)
                .bind(until)
                .bind(wanted)
                .fetch_all(&self.pool)
                .await?,
        )?;
        let whole_count = if (whole.len() as i64) < wanted {
            whole.len() as i64
        } else {
            sqlx::query_scalar(&read(UsageRead::WholeCount))
                .bind(scope.as_str())
                .bind(since)
                .bind(until)
                .fetch_one(&self.pool)
                .await?
        };
        let cut = decode(
            sqlx::query(&read(UsageRead::Cut))
                .bind(scope.as_str())
                .bind(since)
                .bind(until)
                .fetch_all(&self.pool)
                .await?,
        )?;
        let groups = merge_usage(whole, cut, whole_count, limit);
        Ok(groups)
    }

    async fn usage_between(&self, key: &LedgerKey, bounds: &[i64]) -> Result<Vec<Usage>> {
        if bounds.len() < 2 {
            return Ok(Vec::new());
        }
        let sql = totals_before_sql(|n| format!("${n}"), bounds, "::BIGINT");
        let rows = sqlx::query(&sql)
            .bind(key.scope.as_str())
            .bind(&key.key)
            .fetch_all(&self.pool)
            .await?;
        let totals = rows
            .iter()
            .map(|row| usage_at(row, 0))
            .collect::<Result<Vec<_>>>()?;
        Ok(spans(&totals))
    }

    async fn record_breaker(
        &self,
        subject: &str,
        verdict: Verdict,
        policy: &BreakerPolicy,
        at: Timestamp,
    ) -> Result<(Breaker, bool)> {
        let mut tx = self.write_tx().await?;
        let before = breaker_of(&mut tx, subject).await?;
        let (after, opened) = before.after(verdict, at, policy);
        if after != before {
            upsert_breaker(&mut tx, subject, &after, at).await?;
        }
        tx.commit().await?;
        Ok((after, opened))
    }

    async fn raise_budget_alert(
        &self,
        alert: &BudgetAlert,
        to: &Addressee,
        change: &Change,
    ) -> Result<Option<InboxId>> {
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO budget_alerts (budget, window_start, kind, raised_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&alert.budget)
        .bind(alert.window_start)
        .bind(&alert.kind)
        .bind(change.at.as_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        let new = NewInboxItem::new(InboxKind::Alert, None, to.clone(), &alert.text)?;
        let item = insert_item(&mut tx, &new, None, change).await?;
        sqlx::query("UPDATE budget_alerts SET item = $1 WHERE budget = $2 AND window_start = $3 AND kind = $4")
            .bind(item.id.get())
            .bind(&alert.budget)
            .bind(alert.window_start)
            .bind(&alert.kind)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(item.id))
    }
}
