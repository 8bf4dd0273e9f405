//! `mission run ask | progress | submit`: a run talking back, identified by the run token in its
//! environment. Every report is fenced: a superseded attempt is refused (exit 1).

use super::app;
use crate::cli::{EvidenceCommand, RunCommand};
use crate::exit::CliError;
use crate::output;
use mission_engine::app::EvidenceRequest;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, command: RunCommand) -> Result<ExitCode, CliError> {
    let token = std::env::var("MISSION_RUN_TOKEN")
        .map_err(|_| CliError::usage("not inside a run: MISSION_RUN_TOKEN is not set"))?;
    let (_, app) = app(config).await?;
    // A reviewer run's verdict: its token names a review, not a ticket's run.
    if let RunCommand::Review(args) = &command {
        let decision = args.decision.parse().map_err(CliError::usage)?;
        let reviewed = app.run_review(&token, decision, &args.reason).await?;
        if args.json {
            output::json_line(&reviewed)?;
        } else {
            output::print(&format!(
                "{} {}: {}\n",
                reviewed.ticket.id,
                reviewed.review.outcome.as_str(),
                reviewed.ticket.state
            ))?;
        }
        app.close().await;
        return Ok(ExitCode::SUCCESS);
    }
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
        RunCommand::Evidence(command) => {
            let (json, request) = match command {
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
            let record = app.run_evidence(&run, request).await?;
            if json {
                output::json_line(&record)?;
            } else {
                output::print(&format!(
                    "{} {}: {}\n",
                    record.evidence.summary(),
                    record.verification.status(),
                    record.verification.failure().unwrap_or("ok")
                ))?;
            }
            app.close().await;
            // Recorded either way; whether it proves anything is the answer.
            return Ok(if record.verification.is_verified() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        RunCommand::Review(_) => unreachable!("handled above"),
    };
    if json {
        output::json_line(&value)?;
    }
    app.close().await;
    Ok(ExitCode::SUCCESS)
}
