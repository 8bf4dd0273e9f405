//! `mission run ask | progress | submit | evidence | review`: a run talking back, identified by
//! the run token in its environment. Every report is fenced: a superseded attempt is refused
//! (exit 1).
//!
//! Inside a run (`MISSION_RUN_SOCKET` set) the request goes to the run's supervisor over that
//! socket: a sandboxed run can read neither the configuration nor the store. Outside one (a
//! person holding a run's token, or a reviewer run started by auto-review), the same use case
//! runs here, against the store (`callback::carry_out` either way).

use super::app;
use crate::cli::{EvidenceCommand, RunCommand};
use crate::exit::CliError;
use crate::output;
use mission_engine::app::EvidenceRequest;
use mission_engine::callback::{self, Action, Request};
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, command: RunCommand) -> Result<ExitCode, CliError> {
    let token = std::env::var("MISSION_RUN_TOKEN")
        .map_err(|_| CliError::usage("not inside a run: MISSION_RUN_TOKEN is not set"))?;
    let (action, json) = match command {
        RunCommand::Ask(args) => (Action::Ask { text: args.text }, args.json),
        RunCommand::Progress(args) => (Action::Progress { text: args.text }, args.json),
        RunCommand::Submit(args) => (Action::Submit, args.json),
        RunCommand::Evidence(command) => {
            let (json, evidence) = match command {
                EvidenceCommand::Commit(a) => (a.json, EvidenceRequest::Commit(a.sha)),
                EvidenceCommand::Test(a) => (a.json, EvidenceRequest::Test(a.name)),
                EvidenceCommand::Route(a) => (a.json, EvidenceRequest::Route(a.name)),
                EvidenceCommand::Artifact(a) => (
                    a.json,
                    EvidenceRequest::Artifact {
                        path: a.path,
                        media_type: a.media_type,
                    },
                ),
            };
            (Action::Evidence { evidence }, json)
        }
        // A reviewer run's verdict: its token names a review, not a ticket's run.
        RunCommand::Review(args) => (
            Action::Review {
                decision: args.decision.parse().map_err(CliError::usage)?,
                reason: args.reason,
            },
            args.json,
        ),
    };
    let answer = call(config, token, action).await?;
    print(&answer, json)?;
    Ok(if answer.negative {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Carries out a run's `action` under `token`: over the run's socket when inside a run
/// (`MISSION_RUN_SOCKET`), else against the store here.
pub async fn call(
    config: Option<&Path>,
    token: String,
    action: Action,
) -> Result<callback::Answer, CliError> {
    Ok(match std::env::var_os("MISSION_RUN_SOCKET") {
        Some(socket) => {
            let run_dir = Path::new(&socket)
                .parent()
                .map(Path::to_owned)
                .unwrap_or_default();
            let request = Request { token, action };
            tokio::task::spawn_blocking(move || callback::call(&run_dir, &request))
                .await
                .map_err(|e| CliError::internal(e.to_string()))??
        }
        None => {
            let (_, app) = app(config).await?;
            let answer = callback::carry_out(&app, &token, action).await;
            app.close().await;
            answer?
        }
    })
}

/// Prints an answer: its JSON, or its line.
pub fn print(answer: &callback::Answer, json: bool) -> Result<(), CliError> {
    if json {
        output::json_line(&answer.value)
    } else if !answer.line.is_empty() {
        output::print(&format!("{}\n", answer.line))
    } else {
        Ok(())
    }
}
