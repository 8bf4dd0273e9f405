//! `mission explain ID`: the runnability policy's answer for one ticket. Exit 0 when runnable,
//! 1 when not.

use super::app;
use crate::cli::ExplainArgs;
use crate::exit::CliError;
use crate::output;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, args: ExplainArgs) -> Result<ExitCode, CliError> {
    let (_, app) = app(config).await?;
    let explanation = app.explain(&app.ticket_id(&args.id)?).await?;
    if args.json {
        output::json_line(&explanation)?;
    } else if explanation.runnable {
        output::print(&format!("{}: runnable\n", explanation.ticket))?;
    } else {
        let mut text = format!("{}: not runnable\n", explanation.ticket);
        for reason in &explanation.reasons {
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
