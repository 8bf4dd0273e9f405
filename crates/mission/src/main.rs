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
    // Whatever the server or a command writes (store, logs, run files, sockets) is its user's
    // alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    // The launcher (a run's first moments, on the pickup path): single-threaded, no tracing, no
    // runtime, and not even clap's parser (`cli::RunSandboxedArgs` documents its shape).
    if let Some((spec, args)) = launcher_args() {
        let (code, message) = mission_engine::sandbox::launch::run(&spec, &args);
        eprintln!("mission: {message}");
        return std::process::ExitCode::from(code);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    // The server reports what it does; one-shot commands speak only of problems.
    init_tracing(if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    });
    let _failpoints = mission_engine::failpoints_from_env();
    // The server runs its dispatcher, runners, scheduler (and later its HTTP side) on a
    // multi-thread runtime; a one-shot command starts faster on the current thread.
    let runtime = if matches!(cli.command, Command::Serve(_)) {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            return report(CliError::internal(format!(
                "cannot start the runtime: {err}"
            )));
        }
    };
    let outcome = runtime.block_on(async {
        let outcome = run(cli).await;
        // A done ticket's worktree is deleted after the answer is out; not after the process.
        mission_engine::workspace::trash_emptied().await;
        outcome
    });
    match outcome {
        Ok(code) => code,
        Err(err) => report(err),
    }
}

/// `mission __run-sandboxed --spec FILE -- ARGS…`, exactly as the runner writes it: the spec
/// file and the program's arguments. Anything else is for clap.
fn launcher_args() -> Option<(std::path::PathBuf, Vec<std::ffi::OsString>)> {
    let mut argv = std::env::args_os().skip(1);
    if argv.next()? != mission_engine::sandbox::launch::COMMAND {
        return None;
    }
    if argv.next()? != "--spec" {
        return None;
    }
    let spec = std::path::PathBuf::from(argv.next()?);
    if argv.next()? != "--" {
        return None;
    }
    Some((spec, argv.collect()))
}

/// Help and version go to stdout as clap renders them; a usage error becomes one line.
fn usage_error(err: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return std::process::ExitCode::from(if err.use_stderr() { 2 } else { 0 });
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    report(CliError::usage(format!("{first} (see `mission --help`)")))
}

fn report(err: CliError) -> std::process::ExitCode {
    eprintln!("mission: {err}");
    std::process::ExitCode::from(err.code as u8)
}

fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MISSION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

async fn run(cli: Cli) -> Result<std::process::ExitCode, CliError> {
    let result = run_command(cli).await;
    // Wake-ups of other nodes are sent in the background: wait for them before exiting.
    commands::flush_wakes().await;
    result
}

async fn run_command(cli: Cli) -> Result<std::process::ExitCode, CliError> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Init(args) => commands::init::run(args).await,
        Command::Migrate(args) => commands::migrate::run(config, args).await,
        Command::Ticket(command) => commands::ticket::run(config, command).await,
        Command::Explain(args) => commands::explain::run(config, args).await,
        Command::Events(args) => commands::events::run(config, args).await,
        Command::Serve(args) => commands::serve::run(config, args).await,
        Command::Dispatch(args) => commands::dispatch::run(config, args).await,
        Command::Run(command) => commands::run::run(config, command).await,
        Command::Task(command) => commands::task::run(config, command).await,
        Command::Token(command) => commands::token::run(config, command).await,
        Command::Status(args) => commands::status::run(config, args).await,
        Command::Usage(args) => commands::usage::run(config, args).await,
        Command::Incident(command) => commands::incident::run(config, command).await,
        Command::Inbox(command) => commands::inbox::run(config, command).await,
        Command::Notify(command) => commands::notify::run(config, command).await,
        Command::Webhook(command) => commands::notify::webhook(config, command).await,
        // Reached only with arguments the runner never writes.
        Command::RunSandboxed(_) => Err(CliError::usage(
            "__run-sandboxed is started by the runner: __run-sandboxed --spec FILE -- ARGS…",
        )),
    }
}
