//! `mission task list | run NAME | history NAME`.

use super::{engine, open};
use crate::cli::TaskCommand;
use crate::exit::CliError;
use crate::output::{self, cell};
use mission_core::Timestamp;
use mission_core::task::{Outcome, Trigger};
use mission_engine::Runner;
use mission_engine::scheduler::{Fired, Scheduler};
use mission_engine::tasks::{TaskContext, load_dir};
use std::path::Path;
use std::process::ExitCode;

#[derive(serde::Serialize)]
struct Listed {
    name: String,
    kind: &'static str,
    schedule: String,
    enabled: bool,
    next: Option<Timestamp>,
    last_outcome: Option<Outcome>,
    last_reason: Option<String>,
    last_at: Option<Timestamp>,
}

pub async fn run(config: Option<&Path>, command: TaskCommand) -> Result<ExitCode, CliError> {
    let (instance, store) = open(config).await?;
    let (store, settings, clock) = engine(&instance, store)?;
    let code = match command {
        TaskCommand::List(args) => {
            let set = load_dir(&settings.tasks_dir);
            let now = clock.now();
            let mut listed = Vec::new();
            for spec in set.specs.values() {
                let last_slot = store.last_task_slot(spec.name.as_str()).await?;
                let last = store.task_runs(spec.name.as_str(), 1).await?.pop();
                let from = last_slot.map_or(now, |slot| slot.max(now));
                listed.push(Listed {
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
            let errors: Vec<String> = set.errors.iter().map(|e| e.to_string()).collect();
            if args.json {
                output::json_line(&serde_json::json!({ "tasks": listed, "errors": errors }))?;
            } else {
                let mut text = format!(
                    "{} {} {} {} LAST\n",
                    cell("NAME", 20),
                    cell("KIND", 12),
                    cell("SCHEDULE", 28),
                    cell("NEXT", 25)
                );
                for task in &listed {
                    let next = match (task.enabled, task.next) {
                        (false, _) => "disabled".to_owned(),
                        (true, Some(next)) => next.to_string(),
                        (true, None) => "-".to_owned(),
                    };
                    let last = match (&task.last_outcome, &task.last_reason) {
                        (Some(outcome), Some(reason)) => format!("{outcome}: {reason}"),
                        (None, _) if task.last_at.is_some() => "running".to_owned(),
                        _ => "-".to_owned(),
                    };
                    text.push_str(&format!(
                        "{} {} {} {} {last}\n",
                        cell(&task.name, 20),
                        cell(task.kind, 12),
                        cell(&task.schedule, 28),
                        cell(&next, 25)
                    ));
                }
                for error in &errors {
                    text.push_str(&format!("error: {error}\n"));
                }
                output::print(&text)?;
            }
            if errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        TaskCommand::Run(args) => {
            let set = load_dir(&settings.tasks_dir);
            let Some(spec) = set.specs.get(&args.name).cloned() else {
                let broken = set.errors.iter().find(|e| {
                    Path::new(&e.file)
                        .file_stem()
                        .is_some_and(|s| s == args.name.as_str())
                });
                return Err(match broken {
                    Some(error) => {
                        CliError::usage(format!("task {} cannot run: {error}", args.name))
                    }
                    None => CliError::usage(format!(
                        "no task {:?} in {}",
                        args.name,
                        settings.tasks_dir.display()
                    )),
                });
            };
            let (sink, mut claimed) = tokio::sync::mpsc::unbounded_channel();
            let context = TaskContext {
                store: store.clone(),
                settings: settings.clone(),
                clock: clock.clone(),
                runs: sink,
            };
            let mut scheduler = Scheduler::new(context);
            let fired = scheduler.fire(&spec, None, Trigger::Manual).await?;
            let (run_id, result) = match fired {
                Fired::Started { run } => {
                    let (_, result) = scheduler
                        .next_finished()
                        .await
                        .ok_or_else(|| CliError::internal("the task run vanished"))?;
                    (Some(run), result)
                }
                Fired::Skipped { reason } => (
                    None,
                    mission_core::task::TaskResult::new(Outcome::Skipped, reason),
                ),
                Fired::AlreadyFired => (
                    None,
                    mission_core::task::TaskResult::new(Outcome::Skipped, "already running"),
                ),
            };
            // Runs a dispatch task claimed are supervised here, all at once, as `dispatch --once`
            // does.
            let runner = Runner::new(store.clone(), settings.clone(), clock.clone());
            let (_keep, stopped) = tokio::sync::watch::channel(false);
            let mut supervised = tokio::task::JoinSet::new();
            while let Ok((run, token)) = claimed.try_recv() {
                let (runner, stopped) = (runner.clone(), stopped.clone());
                supervised.spawn(async move { runner.run(run, token, stopped).await });
            }
            while supervised.join_next().await.is_some() {}
            if args.json {
                output::json_line(
                    &serde_json::json!({ "task": spec.name, "run": run_id, "outcome": result.outcome, "reason": result.reason, "counts": result.counts }),
                )?;
            } else {
                output::print(&format!(
                    "{}: {}: {}\n",
                    spec.name, result.outcome, result.reason
                ))?;
            }
            match result.outcome {
                Outcome::Acted | Outcome::Noop => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            }
        }
        TaskCommand::History(args) => {
            let runs = store.task_runs(&args.name, args.limit).await?;
            if args.json {
                output::json_line(&runs)?;
            } else {
                let mut text = String::new();
                for run in &runs {
                    let slot = run
                        .slot
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "manual".to_owned());
                    let outcome = run.outcome.map(|o| o.as_str()).unwrap_or("running");
                    let took = run
                        .duration_ms
                        .map(|d| format!(" in {d} ms"))
                        .unwrap_or_default();
                    text.push_str(&format!(
                        "#{} {} ({}) started {}{took}: {outcome}: {}\n",
                        run.id,
                        slot,
                        run.trigger,
                        run.started_at,
                        run.reason.as_deref().unwrap_or("")
                    ));
                }
                if runs.is_empty() {
                    text.push_str(&format!("no runs of task {:?}\n", args.name));
                }
                output::print(&text)?;
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}
