//! Task runs in SQLite: one row per execution, a unique (task, slot) so each slot fires once.

use super::SqliteStore;
use super::error::is_unique_violation;
use super::events::append_event;
use crate::{Change, Result, StoreError, TaskRun, TaskRunStart, TaskRunStore};
use async_trait::async_trait;
use mission_core::task::{Outcome, TaskResult, Trigger};
use mission_core::{EventKind, Timestamp};
use serde_json::json;
use sqlx::Row;
use sqlx::SqliteConnection;
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
        trigger: row
            .try_get::<String, _>("trigger")?
            .parse::<Trigger>()
            .map_err(StoreError::Corrupt)?,
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

/// Writes `task.finished` for a run just ended, in the ending transaction.
async fn finished_event(conn: &mut SqliteConnection, id: i64, change: &Change) -> Result<()> {
    let sql = format!("SELECT {COLUMNS} FROM task_runs WHERE id = ?");
    let run = decode(&sqlx::query(&sql).bind(id).fetch_one(&mut *conn).await?)?;
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
    append_event(conn, EventKind::TaskFinished, None, change, &data).await?;
    Ok(())
}

#[async_trait]
impl TaskRunStore for SqliteStore {
    async fn begin_task_run(&self, start: &TaskRunStart, change: &Change) -> Result<Option<i64>> {
        let _turn = self.write_turn().await;
        // The unique index `task_runs_one_per_slot` is what makes a slot fire once.
        let inserted = sqlx::query_scalar(
            "INSERT INTO task_runs (task, slot, trigger, node, started_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&start.task)
        .bind(start.slot.map(|s| s.as_millis()))
        .bind(start.trigger.as_str())
        .bind(&start.node)
        .bind(change.at.as_millis())
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(id) => Ok(Some(id)),
            Err(err) if is_unique_violation(&err) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    async fn set_task_run_pid(&self, id: i64, pid: i64) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE task_runs SET pid = ? WHERE id = ?")
            .bind(pid)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn finish_task_run(&self, id: i64, result: &TaskResult, change: &Change) -> Result<bool> {
        let mut tx = self.write_tx().await?;
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
        finished_event(&mut tx, id, change).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_task_skip(
        &self,
        start: &TaskRunStart,
        result: &TaskResult,
        change: &Change,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query_scalar::<_, i64>(
            "INSERT INTO task_runs (task, slot, trigger, node, started_at, ended_at, outcome, reason, counts) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&start.task)
        .bind(start.slot.map(|s| s.as_millis()))
        .bind(start.trigger.as_str())
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
        finished_event(&mut tx, id, change).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn last_task_slot(&self, task: &str) -> Result<Option<Timestamp>> {
        let slot: Option<i64> =
            sqlx::query_scalar("SELECT MAX(slot) FROM task_runs WHERE task = ?")
                .bind(task)
                .fetch_one(&self.pool)
                .await?;
        Ok(slot.map(Timestamp::from_millis))
    }

    async fn open_task_runs(&self, task: Option<&str>) -> Result<Vec<TaskRun>> {
        let rows = match task {
            Some(task) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM task_runs WHERE ended_at IS NULL AND task = ? ORDER BY id"
                );
                sqlx::query(&sql).bind(task).fetch_all(&self.pool).await?
            }
            None => {
                let sql =
                    format!("SELECT {COLUMNS} FROM task_runs WHERE ended_at IS NULL ORDER BY id");
                sqlx::query(&sql).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(decode).collect()
    }

    async fn task_runs(&self, task: &str, limit: u32) -> Result<Vec<TaskRun>> {
        let sql =
            format!("SELECT {COLUMNS} FROM task_runs WHERE task = ? ORDER BY id DESC LIMIT ?");
        let rows = sqlx::query(&sql)
            .bind(task)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }
}
