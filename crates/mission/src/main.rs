//! `mission`: the command-line entry point. Parses arguments, loads the configuration, opens the
//! store and runs one command; maps every failure to one line on stderr and an exit code.

mod cli;
mod commands;
mod config;
mod exit;
mod output;

use clap::Parser;
use cli::{Cli, Command};
use exit::CliError;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return report(CliError::internal(format!("cannot start the runtime: {err}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => report(err),
    }
}

fn report(err: CliError) -> std::process::ExitCode {
    eprintln!("mission: {err}");
    std::process::ExitCode::from(err.code as u8)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MISSION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

async fn run(cli: Cli) -> Result<std::process::ExitCode, CliError> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Init(args) => commands::init::run(args).await,
        Command::Migrate(args) => commands::migrate::run(config, args).await,
        Command::Ticket(command) => commands::ticket::run(config, command).await,
        Command::Explain(args) => commands::explain::run(config, args).await,
        Command::Events(args) => commands::events::run(config, args).await,
    }
}
