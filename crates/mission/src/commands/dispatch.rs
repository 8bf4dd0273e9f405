//! `mission dispatch --once`: one pass of the server's own dispatcher, with the same resolved
//! configuration, then the runs it claimed supervised to their end by the server's own runner.

use super::app;
use crate::cli::DispatchArgs;
use crate::exit::CliError;
use crate::output;
use mission_core::Lane;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, args: DispatchArgs) -> Result<ExitCode, CliError> {
    let lanes = match args.lane.as_deref() {
        Some(lane) => vec![lane.parse::<Lane>().map_err(CliError::usage)?],
        None => vec![Lane::NeedsInput, Lane::Normal],
    };
    // This process supervises the runs it claims, as the server would.
    super::supervisor::harden()?;
    let (_, app) = app(config).await?;
    let outcome = app.dispatch_once(&lanes).await;
    app.close().await;
    let report = outcome?;
    let unknown = report.capacity_unknown().is_some();
    let unrecorded = report.unrecorded();
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
    if unrecorded {
        return Err(CliError::internal(
            "the end of a run could not be recorded; recovery will close it",
        ));
    }
    Ok(if unknown {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
