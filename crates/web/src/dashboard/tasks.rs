//! Tasks: each with its schedule, next firing, last outcome and a bar per recent run coloured
//! by its outcome; a task's page with its history and the "run now" form.

use super::view::{Shell, when, when_opt};
use super::{PageResult, Visitor, forms, page};
use crate::Web;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use mission_store::TaskRun;

/// Runs shown as bars per task.
const BARS: u32 = 30;
/// Runs listed on a task's page.
const HISTORY: u32 = 100;

pub struct Bar {
    /// The bar's left edge in the picture.
    pub x: u32,
    /// Its class: the outcome, or `running`.
    pub outcome: &'static str,
    pub title: String,
}

/// Bars of `runs` (newest first, as the store gives them), oldest on the left.
fn bars(runs: &[TaskRun]) -> Vec<Bar> {
    runs.iter()
        .rev()
        .enumerate()
        .map(|(i, run)| {
            let outcome = run.outcome.map_or("running", |o| o.as_str());
            Bar {
                x: i as u32 * 6,
                outcome,
                title: format!(
                    "{} {}{}",
                    when(run.started_at),
                    outcome,
                    run.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
            }
        })
        .collect()
}

pub struct TaskRow {
    pub name: String,
    pub href: String,
    pub kind: String,
    pub schedule: String,
    pub enabled: bool,
    pub next: String,
    pub last_outcome: String,
    pub last_reason: String,
    pub last_at: String,
    pub bars: Vec<Bar>,
}

#[derive(Template)]
#[template(path = "tasks.html")]
pub struct TasksPage {
    pub shell: Shell,
    pub tasks: Vec<TaskRow>,
    pub errors: Vec<String>,
}

pub async fn tasks(State(web): State<Web>, visitor: Visitor, headers: HeaderMap) -> PageResult {
    let listing = web.app.list_tasks().await?;
    let mut tasks = Vec::new();
    for task in listing.tasks {
        let runs = web.app.task_history(&task.name, BARS).await?;
        tasks.push(TaskRow {
            href: format!("/tasks/{}", forms::percent_encode(&task.name)),
            kind: task.kind.to_owned(),
            schedule: task.schedule,
            enabled: task.enabled,
            next: when_opt(task.next),
            last_outcome: task
                .last_outcome
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default(),
            last_reason: task.last_reason.unwrap_or_default(),
            last_at: when_opt(task.last_at),
            bars: bars(&runs),
            name: task.name,
        });
    }
    let shell = Shell::new(&web, &visitor, "Tasks".to_owned(), "tasks")
        .await
        .with_notice(forms::notice(&headers));
    let page_ = TasksPage {
        shell,
        tasks,
        errors: listing.errors,
    };
    forms::with_notice_cleared(page(&page_)?, &headers)
}

pub struct TaskRunRow {
    pub id: i64,
    pub trigger: String,
    pub slot: String,
    pub started: String,
    pub duration: String,
    pub outcome: String,
    pub reason: String,
    pub counts: String,
}

#[derive(Template)]
#[template(path = "task.html")]
pub struct TaskPage {
    pub shell: Shell,
    pub name: String,
    pub run_href: String,
    pub bars: Vec<Bar>,
    pub runs: Vec<TaskRunRow>,
}

pub async fn task(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> PageResult {
    let runs = web.app.task_history(&name, HISTORY).await?;
    let shell = Shell::new(&web, &visitor, format!("Task {name}"), "tasks")
        .await
        .with_notice(forms::notice(&headers));
    let page_ = TaskPage {
        shell,
        run_href: format!("/tasks/{}/run", forms::percent_encode(&name)),
        bars: bars(&runs[..runs.len().min(BARS as usize)]),
        runs: runs
            .iter()
            .map(|run| TaskRunRow {
                id: run.id,
                trigger: run.trigger.to_string(),
                slot: when_opt(run.slot),
                started: when(run.started_at),
                duration: run
                    .duration_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_default(),
                outcome: run.outcome.map_or("running", |o| o.as_str()).to_owned(),
                reason: run.reason.clone().unwrap_or_default(),
                counts: run
                    .counts
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            })
            .collect(),
        name,
    };
    forms::with_notice_cleared(page(&page_)?, &headers)
}
