use super::{connect_store, migrate_store};
use crate::cli::JsonFlag;
use crate::exit::CliError;
use crate::output;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, args: JsonFlag) -> Result<ExitCode, CliError> {
    let instance = crate::config::load(config)?;
    let store = connect_store(&instance, true).await?;
    let report = migrate_store(&instance, &store).await?;
    store.close().await;
    if args.json {
        output::json_line(&report)?;
    } else if report.applied.is_empty() {
        output::print(&format!(
            "schema is current (version {})\n",
            report.to_version
        ))?;
    } else {
        output::print(&format!(
            "migrated from version {} to {}: {}\n",
            report.from_version,
            report.to_version,
            report.applied.join(", ")
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
