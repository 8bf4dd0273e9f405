//! `mission incident list | show ID | resolve ID --reason R`.

use super::app;
use crate::cli::IncidentCommand;
use crate::exit::CliError;
use crate::output::{self, cell};
use mission_core::incident::{IncidentState, Resolution, Severity};
use mission_core::{Actor, Incident};
use std::path::Path;
use std::process::ExitCode;

fn status(incident: &Incident) -> String {
    match &incident.state {
        IncidentState::Open => "open".to_owned(),
        IncidentState::Resolved { resolution, .. } => match resolution {
            Resolution::Cleared => "resolved (cleared)".to_owned(),
            Resolution::Operator { actor, reason } => {
                format!("resolved by {} ({reason})", actor.as_str())
            }
        },
    }
}

pub async fn run(config: Option<&Path>, command: IncidentCommand) -> Result<ExitCode, CliError> {
    let (_, app) = app(config).await?;
    match command {
        IncidentCommand::List(args) => {
            let severity = args
                .severity
                .as_deref()
                .map(str::parse::<Severity>)
                .transpose()
                .map_err(|e| CliError::usage(format!("--severity: {e}")))?;
            let incidents = app.list_incidents(args.all, severity, args.limit).await?;
            if args.json {
                output::json_line(&incidents)?;
            } else {
                let mut text = format!(
                    "{} {} {} {} DETAIL\n",
                    cell("ID", 5),
                    cell("SEVERITY", 9),
                    cell("FINGERPRINT", 36),
                    cell("SEEN", 5)
                );
                for incident in &incidents {
                    text.push_str(&format!(
                        "{} {} {} {} {}\n",
                        cell(&incident.id.to_string(), 5),
                        cell(incident.severity.as_str(), 9),
                        cell(&incident.fingerprint.to_string(), 36),
                        cell(&incident.occurrences.to_string(), 5),
                        incident.detail
                    ));
                }
                if incidents.is_empty() {
                    text.push_str("no incidents\n");
                }
                output::print(&text)?;
            }
        }
        IncidentCommand::Show(args) => {
            let id = app.incident_id(&args.id)?;
            let view = app.show_incident(id).await?;
            if args.json {
                output::json_line(&view)?;
            } else {
                let i = &view.incident;
                let mut text = format!(
                    "incident {} {} ({}), {}\n{}\nfirst seen {}, last seen {}, {} occurrence(s), reopened {} time(s){}\n",
                    i.id,
                    i.fingerprint,
                    i.severity,
                    status(i),
                    i.detail,
                    i.first_seen,
                    i.last_seen,
                    i.occurrences,
                    i.reopened,
                    i.ticket
                        .as_ref()
                        .map(|t| format!(", about {t}"))
                        .unwrap_or_default()
                );
                for o in &view.occurrence_list {
                    text.push_str(&format!(
                        "#{} {} {} {}\n",
                        o.number, o.at, o.detail, o.evidence
                    ));
                }
                output::print(&text)?;
            }
        }
        IncidentCommand::Resolve(args) => {
            let id = app.incident_id(&args.id)?;
            let incident = app
                .resolve_incident(id, &args.reason, &Actor::cli())
                .await?;
            if args.json {
                output::json_line(&incident)?;
            } else {
                output::print(&format!(
                    "incident {} {} {}\n",
                    incident.id,
                    incident.fingerprint,
                    status(&incident)
                ))?;
            }
        }
    }
    app.close().await;
    Ok(ExitCode::SUCCESS)
}
