//! `mission run ask | progress | submit`: a run talking back, identified by the run token in its
//! environment. Every report is fenced: a superseded attempt is refused (exit 1).

use super::app;
use crate::cli::RunCommand;
use crate::exit::CliError;
use crate::output;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, command: RunCommand) -> Result<ExitCode, CliError> {
    let token = std::env::var("MISSION_RUN_TOKEN")
        .map_err(|_| CliError::usage("not inside a run: MISSION_RUN_TOKEN is not set"))?;
    let (_, app) = app(config).await?;
    let run = app.run_for_token(&token).await?;
    let (json, value) = match command {
        RunCommand::Ask(args) => {
            let ticket = app.run_ask(&run, &args.text).await?;
            (
                args.json,
                serde_json::json!({ "ticket": ticket.id, "state": ticket.state }),
            )
        }
        RunCommand::Progress(args) => {
            app.run_progress(&run, &args.text).await?;
            (
                args.json,
                serde_json::json!({ "ticket": run.ticket, "progress": args.text }),
            )
        }
        RunCommand::Submit(args) => {
            let ticket = app.run_submit(&run).await?;
            (
                args.json,
                serde_json::json!({ "ticket": ticket.id, "state": ticket.state }),
            )
        }
    };
    if json {
        output::json_line(&value)?;
    }
    app.close().await;
    Ok(ExitCode::SUCCESS)
}
