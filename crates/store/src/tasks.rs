//! Task runs: one record per execution of a scheduled (or manual) task, each slot firing once.

use crate::{Change, Result};
use async_trait::async_trait;
use mission_core::Timestamp;
use mission_core::task::{Outcome, TaskResult, Trigger};

#[async_trait]
pub trait TaskRunStore: Send + Sync {
    /// Starts a task run. For a scheduled slot, `None` when that slot already fired: each
    /// (task, slot) fires once.
    async fn begin_task_run(&self, start: &TaskRunStart, change: &Change) -> Result<Option<i64>>;

    /// Records the process group of a command task's run.
    async fn set_task_run_pid(&self, id: i64, pid: i64) -> Result<()>;

    /// Ends a task run with its outcome and writes `task.finished`; false when it had already
    /// ended (e.g. cancelled by a replacing run).
    async fn finish_task_run(&self, id: i64, result: &TaskResult, change: &Change) -> Result<bool>;

    /// Records a slot that did not run (overlap, missed while down) as a finished `skipped` run;
    /// false when the slot is already taken.
    async fn record_task_skip(
        &self,
        start: &TaskRunStart,
        result: &TaskResult,
        change: &Change,
    ) -> Result<bool>;

    /// The newest slot of a task that fired or was skipped.
    async fn last_task_slot(&self, task: &str) -> Result<Option<Timestamp>>;

    /// Task runs not yet ended, of one task or of all.
    async fn open_task_runs(&self, task: Option<&str>) -> Result<Vec<TaskRun>>;

    /// A task's runs, newest first.
    async fn task_runs(&self, task: &str, limit: u32) -> Result<Vec<TaskRun>>;
}

/// How a task run starts.
#[derive(Clone, Debug)]
pub struct TaskRunStart {
    pub task: String,
    pub slot: Option<Timestamp>,
    pub trigger: Trigger,
    /// `HOST:PID` of the process running it.
    pub node: String,
}

/// A stored task run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TaskRun {
    pub id: i64,
    pub task: String,
    pub slot: Option<Timestamp>,
    pub trigger: Trigger,
    pub node: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub duration_ms: Option<i64>,
    pub pid: Option<i64>,
    pub outcome: Option<Outcome>,
    pub reason: Option<String>,
    pub counts: std::collections::BTreeMap<String, i64>,
}
