//! `mission usage`: what runs used, grouped, with the budgets and the parked workers.

use super::app;
use crate::cli::UsageArgs;
use crate::exit::CliError;
use crate::output;
use mission_engine::app::UsageBy;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, args: UsageArgs) -> Result<ExitCode, CliError> {
    let by: UsageBy = args.by.parse()?;
    let (_, app) = app(config).await?;
    let report = app.usage(by, args.since.as_deref(), args.limit).await?;
    app.close().await;
    if args.json {
        output::json_line(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!("usage since {} ({})\n", report.since, report.time_zone);
    text.push_str(&format!(
        "{:<24} {:>6} {:>12} {:>10} {:>10} {:>9}\n",
        "", "runs", "input", "output", "cost $", "run-h"
    ));
    for row in report.rows.iter().chain(std::iter::once(&report.total)) {
        text.push_str(&format!(
            "{:<24} {:>6} {:>12} {:>10} {:>10.2} {:>9.2}\n",
            output::cell(&row.key, 24),
            row.runs,
            row.input_tokens,
            row.output_tokens,
            row.cost_usd,
            row.run_hours
        ));
    }
    let hidden = report.groups - report.rows.len() as i64;
    if hidden > 0 && report.by != UsageBy::Day {
        text.push_str(&format!(
            "… and {hidden} more {}s (--limit 0 shows all)\n",
            report.by.as_str()
        ));
    }
    for budget in &report.budgets {
        text.push_str(&format!(
            "budget {} ({}, {}): {}",
            budget.name, budget.scope, budget.window, budget.standing
        ));
        if let Some(detail) = &budget.detail {
            text.push_str(&format!(" — {detail}"));
        }
        if let Some(resets) = &budget.resets {
            text.push_str(&format!("; resets {resets}"));
        }
        text.push('\n');
    }
    for park in &report.parked {
        text.push_str(&format!(
            "worker {} is rate limited until {} ({})\n",
            park.worker, park.until, park.reason
        ));
    }
    output::print(&text)?;
    Ok(ExitCode::SUCCESS)
}
