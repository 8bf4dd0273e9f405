//! Task runs in SQLite: one row per execution, a unique (task, slot) so each slot fires once.

use super::SqliteStore;
use super::rows::decode_summary;
use crate::{Change, Result, StoreError, TaskRun, TaskRunStart, TicketSummary};
use mission_core::task::{Outcome, TaskResult};
use mission_core::{EventKind, State, Timestamp};
use serde_json::json;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

const COLUMNS: &str =
    "id, task, slot, trigger, node, started_at, ended_at, pid, outcome, reason, counts";

fn decode(row: &SqliteRow) -> Result<TaskRun> {
    let started_at = Timestamp::from_millis(row.try_get("started_at")?);
    let ended_at = row
        .try_get::<Option<i64>, _>("ended_at")?
        .map(Timestamp::from_millis);
    let counts: String = row.try_get("counts")?;
    Ok(TaskRun {
        id: row.try_get("id")?,
        task: row.try_get("task")?,
        slot: row
            .try_get::<Option<i64>, _>("slot")?
            .map(Timestamp::from_millis),
        trigger: row.try_get("trigger")?,
        node: row.try_get("node")?,
        started_at,
        ended_at,
        duration_ms: ended_at.map(|e| e.as_millis() - started_at.as_millis()),
        pid: row.try_get("pid")?,
        outcome: row
            .try_get::<Option<String>, _>("outcome")?
            .map(|o| o.parse::<Outcome>().map_err(StoreError::Corrupt))
            .transpose()?,
        reason: row.try_get("reason")?,
        counts: serde_json::from_str(&counts)
            .map_err(|_| StoreError::Corrupt(format!("invalid task run counts {counts:?}")))?,
    })
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

pub(super) async fn begin_task_run(
    store: &SqliteStore,
    start: &TaskRunStart,
    change: &Change,
) -> Result<Option<i64>> {
    let inserted = sqlx::query_scalar(
        "INSERT INTO task_runs (task, slot, trigger, node, started_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&start.task)
    .bind(start.slot.map(|s| s.as_millis()))
    .bind(&start.trigger)
    .bind(&start.node)
    .bind(change.at.as_millis())
    .fetch_one(&store.pool)
    .await;
    match inserted {
        Ok(id) => Ok(Some(id)),
        Err(err) if is_unique_violation(&err) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

pub(super) async fn set_task_run_pid(store: &SqliteStore, id: i64, pid: i64) -> Result<()> {
    sqlx::query("UPDATE task_runs SET pid = ? WHERE id = ?")
        .bind(pid)
        .bind(id)
        .execute(&store.pool)
        .await?;
    Ok(())
}

pub(super) async fn finish_task_run(
    store: &SqliteStore,
    id: i64,
    result: &TaskResult,
    change: &Change,
) -> Result<bool> {
    let mut tx = store.write_tx().await?;
    let updated = sqlx::query(
        "UPDATE task_runs SET ended_at = ?, outcome = ?, reason = ?, counts = ? \
         WHERE id = ? AND ended_at IS NULL",
    )
    .bind(change.at.as_millis())
    .bind(result.outcome.as_str())
    .bind(&result.reason)
    .bind(serde_json::to_string(&result.counts).expect("counts serialize"))
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(false);
    }
    let sql = format!("SELECT {COLUMNS} FROM task_runs WHERE id = ?");
    let run = decode(&sqlx::query(&sql).bind(id).fetch_one(&mut *tx).await?)?;
    finished_event(&mut tx, &run, change).await?;
    tx.commit().await?;
    Ok(true)
}

async fn finished_event(
    conn: &mut sqlx::SqliteConnection,
    run: &TaskRun,
    change: &Change,
) -> Result<()> {
    let data = json!({
        "task": run.task,
        "run": run.id,
        "slot": run.slot,
        "trigger": run.trigger,
        "outcome": run.outcome,
        "reason": run.reason,
        "counts": run.counts,
        "duration_ms": run.duration_ms,
    });
    sqlx::query("INSERT INTO events (at, kind, ticket, actor, data) VALUES (?, ?, NULL, ?, ?)")
        .bind(change.at.as_millis())
        .bind(EventKind::TaskFinished.as_str())
        .bind(change.actor.as_str())
        .bind(data.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn record_task_skip(
    store: &SqliteStore,
    start: &TaskRunStart,
    result: &TaskResult,
    change: &Change,
) -> Result<bool> {
    let mut tx = store.write_tx().await?;
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO task_runs (task, slot, trigger, node, started_at, ended_at, outcome, reason, counts) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&start.task)
    .bind(start.slot.map(|s| s.as_millis()))
    .bind(&start.trigger)
    .bind(&start.node)
    .bind(change.at.as_millis())
    .bind(change.at.as_millis())
    .bind(result.outcome.as_str())
    .bind(&result.reason)
    .bind(serde_json::to_string(&result.counts).expect("counts serialize"))
    .fetch_one(&mut *tx)
    .await;
    let id = match inserted {
        Ok(id) => id,
        Err(err) if is_unique_violation(&err) => return Ok(false),
        Err(err) => return Err(err.into()),
    };
    let sql = format!("SELECT {COLUMNS} FROM task_runs WHERE id = ?");
    let run = decode(&sqlx::query(&sql).bind(id).fetch_one(&mut *tx).await?)?;
    finished_event(&mut tx, &run, change).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn last_task_slot(store: &SqliteStore, task: &str) -> Result<Option<Timestamp>> {
    let slot: Option<i64> = sqlx::query_scalar("SELECT MAX(slot) FROM task_runs WHERE task = ?")
        .bind(task)
        .fetch_one(&store.pool)
        .await?;
    Ok(slot.map(Timestamp::from_millis))
}

pub(super) async fn open_task_runs(
    store: &SqliteStore,
    task: Option<&str>,
) -> Result<Vec<TaskRun>> {
    let rows = match task {
        Some(task) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM task_runs WHERE ended_at IS NULL AND task = ? ORDER BY id"
            );
            sqlx::query(&sql).bind(task).fetch_all(&store.pool).await?
        }
        None => {
            let sql = format!("SELECT {COLUMNS} FROM task_runs WHERE ended_at IS NULL ORDER BY id");
            sqlx::query(&sql).fetch_all(&store.pool).await?
        }
    };
    rows.iter().map(decode).collect()
}

pub(super) async fn task_runs(store: &SqliteStore, task: &str, limit: u32) -> Result<Vec<TaskRun>> {
    let sql = format!("SELECT {COLUMNS} FROM task_runs WHERE task = ? ORDER BY id DESC LIMIT ?");
    let rows = sqlx::query(&sql)
        .bind(task)
        .bind(i64::from(limit))
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(decode).collect()
}

pub(super) async fn stale_tickets(
    store: &SqliteStore,
    state: State,
    entered_before: Timestamp,
    limit: u32,
) -> Result<Vec<TicketSummary>> {
    let rows = sqlx::query(
        "SELECT id, title, state, assignee, owner, labels, priority, updated_at FROM tickets \
         WHERE state = ? AND state_since < ? ORDER BY state_since LIMIT ?",
    )
    .bind(state.as_str())
    .bind(entered_before.as_millis())
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(decode_summary).collect()
}
