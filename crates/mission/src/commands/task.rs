//! `mission task list | run NAME | history NAME`.

use super::app;
use crate::cli::TaskCommand;
use crate::exit::CliError;
use crate::output::{self, cell};
use mission_core::task::Outcome;
use mission_engine::app::TaskListing;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, command: TaskCommand) -> Result<ExitCode, CliError> {
    let (_, app) = app(config).await?;
    let code = match command {
        TaskCommand::List(args) => {
            let TaskListing {
                tasks: listed,
                errors,
            } = app.list_tasks().await?;
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
            let report = app.run_task(&args.name).await?;
            let result = &report.result;
            if args.json {
                output::json_line(&report)?;
            } else {
                output::print(&format!(
                    "{}: {}: {}\n",
                    report.task, result.outcome, result.reason
                ))?;
            }
            match result.outcome {
                Outcome::Acted | Outcome::Noop => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            }
        }
        TaskCommand::History(args) => {
            let runs = app.task_history(&args.name, args.limit).await?;
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
    app.close().await;
    Ok(code)
}
