//! `mission notify list [--state pending|sent|dead]` and `mission webhook test NAME`.

use super::app;
use crate::cli::{NotifyCommand, WebhookCommand};
use crate::exit::CliError;
use crate::output::{self, cell};
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, command: NotifyCommand) -> Result<ExitCode, CliError> {
    let (_, app) = app(config).await?;
    match command {
        NotifyCommand::List(args) => {
            let rows = app
                .notify_list(args.state.as_deref(), args.channel, args.limit)
                .await?;
            if args.json {
                output::json_line(&rows)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut text = format!(
                "{} {} {} {} {} {} {} LAST ERROR\n",
                cell("ID", 7),
                cell("CHANNEL", 12),
                cell("TOPIC", 20),
                cell("STATE", 7),
                cell("TRIES", 5),
                cell("TICKET", 8),
                cell("WHEN", 24),
            );
            for row in &rows {
                let when = match row.sent_at {
                    Some(at) => format!("sent {at}"),
                    None if row.status == mission_core::notify::OutboxStatus::Pending => {
                        format!("next {}", row.next_attempt_at)
                    }
                    None => String::new(),
                };
                text.push_str(&format!(
                    "{} {} {} {} {} {} {} {}\n",
                    cell(&row.id.to_string(), 7),
                    cell(&row.channel, 12),
                    cell(row.topic.as_str(), 20),
                    cell(row.status.as_str(), 7),
                    cell(&row.attempts.to_string(), 5),
                    cell(
                        &row.ticket
                            .as_ref()
                            .map(|t| t.to_string())
                            .unwrap_or_default(),
                        8
                    ),
                    cell(&when, 24),
                    row.last_error.as_deref().unwrap_or("")
                ));
            }
            if rows.is_empty() {
                text.push_str("no notifications\n");
            }
            output::print(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn webhook(config: Option<&Path>, command: WebhookCommand) -> Result<ExitCode, CliError> {
    let (_, app) = app(config).await?;
    match command {
        WebhookCommand::Test(args) => {
            let attempted = app.webhook_test(&args.name).await?;
            if args.json {
                output::json_line(&serde_json::json!({
                    "ok": attempted.ok,
                    "http_status": attempted.http_status,
                    "error": attempted.error,
                }))?;
            } else if attempted.ok {
                output::print(&format!(
                    "webhook {}: delivered (HTTP {})\n",
                    args.name,
                    attempted.http_status.unwrap_or(0)
                ))?;
            } else {
                output::print(&format!(
                    "webhook {}: not delivered: {}\n",
                    args.name,
                    attempted.error.as_deref().unwrap_or("failed")
                ))?;
            }
            Ok(if attempted.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
