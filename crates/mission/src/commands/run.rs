//! `mission run ask | progress | submit`: a run talking back, identified by the run token in its
//! environment. Every report is fenced: a superseded attempt is refused (exit 1).
//!
//! Inside a run (`MISSION_RUN_SOCKET` set) the request goes to the run's supervisor over that
//! socket: a sandboxed run can read neither the configuration nor the store. Outside one (a
//! person holding a run's token), the use case runs here, against the store.

use super::app;
use crate::cli::RunCommand;
use crate::exit::CliError;
use crate::output;
use mission_engine::callback::{self, Action, Request};
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, command: RunCommand) -> Result<ExitCode, CliError> {
    let token = std::env::var("MISSION_RUN_TOKEN")
        .map_err(|_| CliError::usage("not inside a run: MISSION_RUN_TOKEN is not set"))?;
    let (action, text, json) = match command {
        RunCommand::Ask(args) => (Action::Ask, args.text, args.json),
        RunCommand::Progress(args) => (Action::Progress, args.text, args.json),
        RunCommand::Submit(args) => (Action::Submit, String::new(), args.json),
    };
    let value = match std::env::var_os("MISSION_RUN_SOCKET") {
        Some(socket) => {
            let run_dir = Path::new(&socket)
                .parent()
                .map(Path::to_owned)
                .unwrap_or_default();
            let request = Request {
                token,
                action: action.clone(),
                text: text.clone(),
            };
            let response = tokio::task::spawn_blocking(move || callback::call(&run_dir, &request))
                .await
                .map_err(|e| CliError::internal(e.to_string()))??;
            serde_json::json!({ "ticket": response.ticket, "state": response.state })
        }
        None => {
            let (_, app) = app(config).await?;
            let run = app.run_for_token(&token).await?;
            let value = match action {
                Action::Ask => {
                    let ticket = app.run_ask(&run, &text).await?;
                    serde_json::json!({ "ticket": ticket.id, "state": ticket.state })
                }
                Action::Progress => {
                    app.run_progress(&run, &text).await?;
                    serde_json::json!({ "ticket": run.ticket, "state": "running" })
                }
                Action::Submit => {
                    let ticket = app.run_submit(&run).await?;
                    serde_json::json!({ "ticket": ticket.id, "state": ticket.state })
                }
            };
            app.close().await;
            value
        }
    };
    let value = match action {
        Action::Progress => serde_json::json!({ "ticket": value["ticket"], "progress": text }),
        _ => value,
    };
    if json {
        output::json_line(&value)?;
    }
    Ok(ExitCode::SUCCESS)
}
