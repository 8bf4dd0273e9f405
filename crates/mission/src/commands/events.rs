//! `mission events [--since SEQ] [--ticket ID] [--follow]`: the event log as JSON Lines.

use super::{open, ticket_id};
use crate::cli::EventsArgs;
use crate::exit::CliError;
use crate::output;
use mission_store::EventQuery;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Events read per query.
const PAGE: u32 = 1000;
/// How often `--follow` looks for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub async fn run(config: Option<&Path>, args: EventsArgs) -> Result<ExitCode, CliError> {
    if args.since < 0 {
        return Err(CliError::usage(format!(
            "--since {}: must be 0 or more",
            args.since
        )));
    }
    let (instance, store) = open(config).await?;
    let ticket = args
        .ticket
        .as_deref()
        .map(|t| ticket_id(&instance, t))
        .transpose()?;
    let mut since = args.since;
    loop {
        let query = EventQuery {
            since,
            limit: PAGE,
            ticket: ticket.clone(),
        };
        let events = store.events(&query).await?;
        let mut text = String::new();
        for event in &events {
            text.push_str(&serde_json::to_string(event)?);
            text.push('\n');
        }
        if !text.is_empty() {
            output::print(&text)?;
        }
        if let Some(last) = events.last() {
            since = last.seq;
        }
        if events.len() as u32 == PAGE {
            continue;
        }
        if !args.follow {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
