//! `mission run ask | progress | submit`: a run talking back, identified by the run token in its
//! environment. Every report is fenced: a superseded attempt is refused (exit 1).

use super::{cli_change_by, open, poke};
use crate::cli::RunCommand;
use crate::exit::CliError;
use crate::output;
use mission_core::{Actor, Run};
use mission_store::StoreError;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, command: RunCommand) -> Result<ExitCode, CliError> {
    let token = std::env::var("MISSION_RUN_TOKEN")
        .map_err(|_| CliError::usage("not inside a run: MISSION_RUN_TOKEN is not set"))?;
    let (instance, store) = open(config).await?;
    let run = store
        .run_for_token(&mission_engine::token::hash(&token))
        .await?
        .ok_or_else(|| CliError::usage("MISSION_RUN_TOKEN does not name a run of this instance"))?;
    let change = cli_change_by(Actor::new(format!("run:{}#{}", run.ticket, run.attempt)));
    let refused = |err: StoreError, run: &Run| match err {
        StoreError::Fenced { .. } => CliError::negative(format!(
            "refused: attempt {} of {} is no longer the current attempt, or has ended",
            run.attempt, run.ticket
        )),
        other => other.into(),
    };
    let (json, value) = match command {
        RunCommand::Ask(args) => {
            let ticket = store
                .run_ask(run.id, run.attempt, &args.text, &change)
                .await
                .map_err(|e| refused(e, &run))?;
            (
                args.json,
                serde_json::json!({ "ticket": ticket.id, "state": ticket.state }),
            )
        }
        RunCommand::Progress(args) => {
            store
                .run_progress(run.id, run.attempt, &args.text, &change)
                .await
                .map_err(|e| refused(e, &run))?;
            (
                args.json,
                serde_json::json!({ "ticket": run.ticket, "progress": args.text }),
            )
        }
        RunCommand::Submit(args) => {
            let ticket = store
                .run_submit(run.id, run.attempt, &change)
                .await
                .map_err(|e| refused(e, &run))?;
            (
                args.json,
                serde_json::json!({ "ticket": ticket.id, "state": ticket.state }),
            )
        }
    };
    store.close().await;
    poke(&instance);
    if json {
        output::json_line(&value)?;
    }
    Ok(ExitCode::SUCCESS)
}
