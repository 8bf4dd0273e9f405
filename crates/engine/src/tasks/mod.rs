//! Tasks: loading `tasks/*.md` and executing one run of a task. What each kind does lives in its
//! own module; every execution returns exactly one `TaskResult`.

mod auto_review;
mod board_sweep;
mod command;
mod inbox_drain;
mod triage;

use crate::clock::Clock;
use crate::dispatcher::Dispatcher;
use crate::error::EngineError;
use crate::settings::Settings;
use crate::wake::Waker;
use mission_core::task::{Outcome, TaskFileError, TaskKind, TaskResult, TaskSpec, parse_task};
use mission_core::{Actor, Lane, Run, TicketDraft};
use mission_store::Change;
use mission_store::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The task files of an instance: the good ones, and the errors of the others.
#[derive(Clone, Debug, Default)]
pub struct TaskSet {
    pub specs: BTreeMap<String, TaskSpec>,
    pub errors: Vec<TaskFileError>,
}

/// `load_dir` on the blocking pool, off the async threads: what the server's scheduler uses.
pub async fn load(dir: &Path) -> TaskSet {
    let dir = dir.to_owned();
    match tokio::task::spawn_blocking(move || load_dir(&dir)).await {
        Ok(set) => set,
        // A panic while loading stays a panic, as it would have been on this thread.
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Cancelled: the runtime is shutting down.
        Err(_) => TaskSet::default(),
    }
}

/// Reads every `*.md` file of `dir`. A broken file is reported and the others still load.
/// Blocking: async callers use `load`.
pub fn load_dir(dir: &Path) -> TaskSet {
    let mut set = TaskSet::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return set;
    };
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md") && p.is_file())
        .collect();
    paths.sort();
    for path in paths {
        let shown = path.display().to_string();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = std::fs::read(&path)
            .map_err(|e| TaskFileError {
                file: shown.clone(),
                line: None,
                message: e.to_string(),
            })
            .and_then(|bytes| parse_task(&shown, &stem, &bytes));
        match parsed {
            Ok(spec) => {
                set.specs.insert(spec.name.to_string(), spec);
            }
            Err(error) => set.errors.push(error),
        }
    }
    set
}

/// Where the runs a `dispatch` task claims go to be supervised.
pub type RunSink = mpsc::UnboundedSender<(Run, String)>;

/// What an execution needs.
#[derive(Clone)]
pub struct TaskContext {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    pub runs: RunSink,
    /// Wakes the dispatcher when a task made work runnable (triage, an agent task's ticket).
    pub waker: Arc<dyn Waker>,
}

impl TaskContext {
    /// The use cases, over this context's store, settings, clock and waker.
    pub fn app(&self) -> crate::app::App {
        crate::app::App::new(
            self.store.clone(),
            self.settings.clone(),
            self.clock.clone(),
            self.waker.clone(),
        )
    }

    fn change(&self, task: &str) -> Change {
        Change::new(Actor::new(format!("task:{task}")), self.clock.now())
    }
}

/// Executes one run of `spec` (already recorded as started, id `run`) to its result. The time
/// limit is the caller's.
pub async fn execute(context: &TaskContext, spec: &TaskSpec, run: i64) -> TaskResult {
    let result = match spec.kind {
        TaskKind::Command => command::run(context, spec, run).await,
        TaskKind::Agent => agent(context, spec).await,
        TaskKind::Dispatch => dispatch(context, spec).await,
        TaskKind::Triage => triage::run(context, spec).await,
        TaskKind::BoardSweep => board_sweep::run(context, spec).await,
        TaskKind::OperatorAudit => operator_audit(context, spec)
            .await
            .map_err(EngineError::from),
        TaskKind::AutoReview => auto_review::run(context, spec)
            .await
            .map_err(EngineError::from),
        TaskKind::InboxDrain => inbox_drain::run(context, spec)
            .await
            .map_err(EngineError::from),
    };
    result.unwrap_or_else(|error| TaskResult::new(Outcome::Failed, error.to_string()))
}

/// `operator-audit`: one pass of the deterministic audit; `acted` with the counts of incidents
/// opened, updated, reopened and resolved, or `noop`.
async fn operator_audit(context: &TaskContext, spec: &TaskSpec) -> Result<TaskResult, String> {
    let tasks = load(&context.settings.tasks_dir).await;
    let actor = Actor::new(format!("task:{}", spec.name));
    crate::audit::run(
        context.store.as_ref(),
        &context.settings,
        &tasks,
        context.clock.now(),
        actor,
    )
    .await
    .map(|report| report.result)
    .map_err(|e| format!("the audit could not finish: {e}"))
}

/// `agent`: a ticket for the worker with the body as its text, run by the ticket runner.
async fn agent(context: &TaskContext, spec: &TaskSpec) -> Result<TaskResult, EngineError> {
    let worker = spec
        .worker
        .as_ref()
        .ok_or_else(|| EngineError::Task("an agent task needs a worker".to_owned()))?;
    if context.settings.workforce.worker(worker).is_none() {
        return Err(EngineError::Task(format!(
            "{worker} is not a configured worker"
        )));
    }
    let key = &context.settings.ticket_key;
    if spec.if_open == mission_core::task::IfOpen::Skip
        && let Some(open) = previous_open_ticket(context, spec).await?
    {
        return Ok(TaskResult::new(
            Outcome::Skipped,
            format!(
                "{} of the previous firing is still {}; no new ticket (if_open = \"skip\")",
                open.id, open.state
            ),
        )
        .count("ticket", open.id.number()));
    }
    let now = context.clock.now();
    let draft = TicketDraft {
        title: format!("Task {} at {now}", spec.name),
        body: spec.body.clone(),
        assignee: Some(worker.to_string()),
        labels: vec!["task".to_owned(), format!("task:{}", spec.name)],
        evidence_policy: Some("none".to_owned()),
        ..TicketDraft::default()
    }
    .validate()
    .map_err(|e| EngineError::Task(e.to_string()))?;
    let created = context
        .store
        .create_tickets(key, vec![draft], &context.change(spec.name.as_str()))
        .await?;
    context.waker.wake();
    Ok(TaskResult::new(
        Outcome::Acted,
        format!("{} created for {worker}", created[0].id),
    )
    .count("tickets_created", 1)
    .count("ticket", created[0].id.number()))
}

/// The ticket of the task's previous firing, when it is still open (not done, failed or
/// cancelled). Each firing records its ticket's number (`ticket` in its counts), a skipped one
/// the open ticket's, so the newest finished run names it.
async fn previous_open_ticket(
    context: &TaskContext,
    spec: &TaskSpec,
) -> Result<Option<mission_core::Ticket>, EngineError> {
    let runs = context.store.task_runs(spec.name.as_str(), 5).await?;
    let Some(number) = runs
        .iter()
        .filter(|r| r.ended_at.is_some())
        .find_map(|r| r.counts.get("ticket").copied())
    else {
        return Ok(None);
    };
    let id = mission_core::TicketId::new(&context.settings.ticket_key, number);
    match context.store.ticket(&id).await {
        Ok(ticket) if !ticket.state.is_closed() && ticket.state != mission_core::State::Failed => {
            Ok(Some(ticket))
        }
        Ok(_) | Err(mission_store::StoreError::NotFound(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// `dispatch`: one pass of the server's dispatcher (per lane), its runs handed to the server's
/// runner.
async fn dispatch(context: &TaskContext, spec: &TaskSpec) -> Result<TaskResult, EngineError> {
    let dispatcher = Dispatcher::new(
        context.store.clone(),
        context.settings.clone(),
        context.clock.clone(),
    );
    let lanes = match spec.lane {
        Some(lane) => vec![lane],
        None => vec![Lane::NeedsInput, Lane::Normal],
    };
    let (mut claimed, mut refused, mut candidates) = (0, 0, 0);
    // The server's pass: every lane's claims (capacity counted once), then each lane's
    // decisions. Every claimed run goes to the runner first, whatever else failed.
    let mut passes = Vec::new();
    let mut failure = None;
    for report in dispatcher.claim_runnable_lanes(&lanes).await? {
        match report {
            Ok(mut report) => {
                claimed += report.claimed.len() as i64;
                for run in std::mem::take(&mut report.claimed) {
                    context
                        .runs
                        .send(run)
                        .map_err(|_| EngineError::Task("the runner is gone".to_owned()))?;
                }
                passes.push(report);
            }
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    if let Some(error) = failure {
        return Err(error.into());
    }
    for mut report in passes {
        if let Some(error) = report.capacity_unknown {
            return Ok(TaskResult::new(
                Outcome::Degraded,
                format!("capacity could not be counted ({error}); nothing dispatched"),
            )
            .count("claimed", claimed));
        }
        refused += report.refused.len() as i64;
        candidates += i64::from(report.candidates);
        dispatcher.record_decisions(&mut report).await?;
    }
    let result = if claimed > 0 {
        TaskResult::new(Outcome::Acted, format!("claimed {claimed}"))
    } else if refused > 0 {
        TaskResult::new(
            Outcome::Noop,
            format!("{refused} claims refused; nothing claimed"),
        )
    } else {
        TaskResult::new(Outcome::Noop, "nothing runnable")
    };
    Ok(result
        .count("claimed", claimed)
        .count("refused", refused)
        .count("candidates", candidates))
}
