//! `mission dispatch --once`: one pass of the server's own dispatcher, with the same resolved
//! configuration, then the runs it claimed supervised to their end by the server's own runner.

use super::{engine, open};
use crate::cli::DispatchArgs;
use crate::exit::CliError;
use crate::output;
use mission_core::Lane;
use mission_engine::{Dispatcher, PassReport, RunReport, Runner};
use std::path::Path;
use std::process::ExitCode;

#[derive(serde::Serialize)]
struct DispatchReport {
    passes: Vec<PassReport>,
    runs: Vec<RunReport>,
}

pub async fn run(config: Option<&Path>, args: DispatchArgs) -> Result<ExitCode, CliError> {
    let lanes = match args.lane.as_deref() {
        Some(lane) => vec![lane.parse::<Lane>().map_err(CliError::usage)?],
        None => vec![Lane::NeedsInput, Lane::Normal],
    };
    let (instance, store) = open(config).await?;
    let (store, settings, clock) = engine(&instance, store)?;
    let dispatcher = Dispatcher::new(store.clone(), settings.clone(), clock.clone());
    let runner = Runner::new(store.clone(), settings, clock);
    let mut passes = Vec::new();
    let mut failure = None;
    for lane in lanes {
        match dispatcher.dispatch_once(lane).await {
            Ok(pass) => passes.push(pass),
            // What earlier lanes claimed is still supervised below; the error is reported after.
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let (_keep, stopped) = tokio::sync::watch::channel(false);
    let mut supervised = tokio::task::JoinSet::new();
    for (run, token) in passes
        .iter_mut()
        .flat_map(|pass| std::mem::take(&mut pass.claimed))
    {
        let runner = runner.clone();
        let stopped = stopped.clone();
        supervised.spawn(async move { runner.run(run, token, stopped).await });
    }
    let mut runs = Vec::new();
    while let Some(report) = supervised.join_next().await {
        runs.push(
            report.map_err(|e| CliError::internal(format!("a run's supervisor failed: {e}")))?,
        );
    }
    runs.sort_by_key(|r| r.run);
    if let Some(error) = failure {
        store.close().await;
        return Err(error.into());
    }
    let unknown = passes.iter().find_map(|p| p.capacity_unknown.clone());
    let unrecorded = runs.iter().any(|r| !r.recorded);
    let report = DispatchReport { passes, runs };
    if args.json {
        output::json_line(&report)?;
    } else {
        let mut text = String::new();
        for pass in &report.passes {
            let lane = pass.lane.map(|l| l.as_str()).unwrap_or("-");
            match &pass.capacity_unknown {
                Some(error) => text.push_str(&format!(
                    "{lane}: capacity unknown ({error}); nothing dispatched\n"
                )),
                None => text.push_str(&format!(
                    "{lane}: {} candidates, {} claimed, {} refused, {} decisions recorded\n",
                    pass.candidates,
                    pass.claimed_tickets.len(),
                    pass.refused.len(),
                    pass.decisions_recorded
                )),
            }
        }
        for run in &report.runs {
            let state = run
                .ticket_state
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into());
            let how = match (&run.failure_class, &run.detail) {
                (Some(class), Some(detail)) => format!("{class}: {detail}"),
                (Some(class), None) => class.to_string(),
                _ => "finished".to_owned(),
            };
            text.push_str(&format!(
                "{} attempt {}: {how}; ticket now {state}\n",
                run.ticket, run.attempt
            ));
        }
        output::print(&text)?;
    }
    store.close().await;
    if unrecorded {
        return Err(CliError::internal(
            "the end of a run could not be recorded; recovery will close it",
        ));
    }
    Ok(if unknown.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
