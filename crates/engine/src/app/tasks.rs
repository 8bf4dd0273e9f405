//! Tasks: the list with next firings and last outcomes, a manual run (the same `fire` as a
//! scheduled slot), and a task's history.

use super::{App, AppError, AppResult};
use crate::scheduler::{Fired, Scheduler};
use crate::tasks::{TaskContext, load_dir};
use mission_core::Timestamp;
use mission_core::task::{Outcome, TaskResult};
use mission_store::TaskRun;
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct ListedTask {
    pub name: String,
    pub kind: &'static str,
    pub schedule: String,
    pub enabled: bool,
    pub next: Option<Timestamp>,
    pub last_outcome: Option<Outcome>,
    pub last_reason: Option<String>,
    pub last_at: Option<Timestamp>,
}

/// Every task, and every broken task file (`FILE:LINE: problem`).
#[derive(Clone, Debug, Serialize)]
pub struct TaskListing {
    pub tasks: Vec<ListedTask>,
    pub errors: Vec<String>,
}

/// A manual run's result.
#[derive(Clone, Debug, Serialize)]
pub struct TaskRunReport {
    pub task: String,
    pub run: Option<i64>,
    #[serde(flatten)]
    pub result: TaskResult,
}

impl App {
    pub async fn list_tasks(&self) -> AppResult<TaskListing> {
        let set = self.load_tasks().await?;
        let now = self.clock.now();
        let mut tasks = Vec::new();
        for spec in set.specs.values() {
            let last_slot = self.store.last_task_slot(spec.name.as_str()).await?;
            let last = self.store.task_runs(spec.name.as_str(), 1).await?.pop();
            let from = last_slot.map_or(now, |slot| slot.max(now));
            tasks.push(ListedTask {
                name: spec.name.to_string(),
                kind: spec.kind.as_str(),
                schedule: spec.schedule.describe(),
                enabled: spec.enabled,
                next: spec
                    .enabled
                    .then(|| spec.schedule.next_after(from).map(|s| spec.fire_time(s)))
                    .flatten(),
                last_outcome: last.as_ref().and_then(|r| r.outcome),
                last_reason: last.as_ref().and_then(|r| r.reason.clone()),
                last_at: last.as_ref().map(|r| r.ended_at.unwrap_or(r.started_at)),
            });
        }
        let errors = set.errors.iter().map(|e| e.to_string()).collect();
        Ok(TaskListing { tasks, errors })
    }

    /// Runs a task now through the same path as a scheduled firing; the runs a dispatch task
    /// claims are supervised here to their end.
    pub async fn run_task(&self, name: &str) -> AppResult<TaskRunReport> {
        let set = self.load_tasks().await?;
        let Some(spec) = set.specs.get(name).cloned() else {
            let broken = set.errors.iter().find(|e| {
                Path::new(&e.file)
                    .file_stem()
                    .is_some_and(|stem| stem == name)
            });
            return Err(match broken {
                Some(error) => AppError::invalid(format!("task {name} cannot run: {error}")),
                None => AppError::not_found(format!(
                    "no task {name:?} in {}",
                    self.settings.tasks_dir.display()
                )),
            }
            .on_field("name"));
        };
        let (sink, mut claimed) = tokio::sync::mpsc::unbounded_channel();
        let context = TaskContext {
            store: self.store.clone(),
            settings: self.settings.clone(),
            clock: self.clock.clone(),
            runs: sink,
            waker: self.waker.clone(),
        };
        let mut scheduler = Scheduler::new(context);
        let (run, result) = match scheduler
            .fire(&spec, None, mission_core::task::Trigger::Manual)
            .await?
        {
            Fired::Started { run } => {
                let (_, result) = scheduler
                    .next_finished()
                    .await
                    .ok_or_else(|| AppError::internal("the task run vanished"))?;
                (Some(run), result)
            }
            Fired::Skipped { reason } => (None, TaskResult::new(Outcome::Skipped, reason)),
            Fired::AlreadyFired => (None, TaskResult::new(Outcome::Skipped, "already running")),
        };
        let mut runs = Vec::new();
        while let Ok(pair) = claimed.try_recv() {
            runs.push(pair);
        }
        self.supervise(runs).await?;
        Ok(TaskRunReport {
            task: spec.name.to_string(),
            run,
            result,
        })
    }

    pub async fn task_history(&self, name: &str, limit: u32) -> AppResult<Vec<TaskRun>> {
        Ok(self.store.task_runs(name, limit).await?)
    }

    /// Reads the tasks folder off the async threads.
    pub(super) async fn load_tasks(&self) -> AppResult<crate::tasks::TaskSet> {
        let dir = self.settings.tasks_dir.clone();
        tokio::task::spawn_blocking(move || load_dir(&dir))
            .await
            .map_err(|e| AppError::internal(format!("reading the tasks folder: {e}")))
    }
}
