//! `mission explain ID`: the runnability policy's answer for one ticket. Exit 0 when runnable,
//! 1 when not.

use super::{open, ticket_id};
use crate::cli::ExplainArgs;
use crate::exit::CliError;
use crate::output;
use mission_core::policy::Reason;
use mission_core::{TicketId, Timestamp};
use std::path::Path;
use std::process::ExitCode;

#[derive(serde::Serialize)]
struct Explanation<'a> {
    ticket: &'a TicketId,
    runnable: bool,
    reasons: &'a [Reason],
}

pub async fn run(config: Option<&Path>, args: ExplainArgs) -> Result<ExitCode, CliError> {
    let (instance, store) = open(config).await?;
    let id = ticket_id(&instance, &args.id)?;
    let (ticket, verdict) =
        mission_engine::explain::explain(&*store, &instance.workforce, &id, Timestamp::now())
            .await?;
    let explanation = Explanation {
        ticket: &ticket.id,
        runnable: verdict.is_runnable(),
        reasons: verdict.reasons(),
    };
    if args.json {
        output::json_line(&explanation)?;
    } else if explanation.runnable {
        output::print(&format!("{}: runnable\n", ticket.id))?;
    } else {
        let mut text = format!("{}: not runnable\n", ticket.id);
        for reason in explanation.reasons {
            text.push_str(&format!("  {}: {}\n", reason.code, reason.detail));
        }
        output::print(&text)?;
    }
    Ok(if explanation.runnable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
