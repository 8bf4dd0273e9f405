//! `mission status`: the verdict, its reasons, and whether the server is alive. Exits 0
//! working, 1 degraded, 2 broken.

use super::app;
use crate::cli::JsonFlag;
use crate::exit::CliError;
use crate::output;
use mission_core::Actor;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, args: JsonFlag) -> Result<ExitCode, CliError> {
    let (_, app) = app(config).await?;
    let report = app.status(&Actor::cli()).await?;
    app.close().await;
    if args.json {
        output::json_line(&report)?;
    } else {
        let server = match (&report.server.node, report.server.last_heartbeat) {
            (Some(node), Some(beat)) if report.server.alive => {
                format!("server {node} is alive (last heartbeat {beat})")
            }
            (Some(node), Some(beat)) => {
                format!("server {node} is NOT running (last heartbeat {beat})")
            }
            _ => "no server has ever run (start `mission serve`)".to_owned(),
        };
        let mut text = format!("{}\n{server}\n", report.verdict);
        for reason in &report.reasons {
            text.push_str(&format!(
                "{} {} [{}]: {}",
                reason.severity, reason.code, reason.component, reason.detail
            ));
            if let Some(since) = reason.since {
                text.push_str(&format!(" (since {since})"));
            }
            if !reason.ids.is_empty() {
                text.push_str(&format!(" — {}", reason.ids.join(", ")));
            }
            text.push('\n');
        }
        output::print(&text)?;
    }
    Ok(ExitCode::from(report.exit_code()))
}
