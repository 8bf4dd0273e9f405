//! `mission serve`: the dispatcher and runners in the foreground, until SIGTERM or ctrl-c.

use super::{open_for_server, settings};
use crate::cli::ServeArgs;
use crate::config::StoreLocation;
use crate::exit::CliError;
use mission_engine::SystemClock;
use mission_engine::wake::{self, WakeSignal};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

pub async fn run(config: Option<&Path>, _args: ServeArgs) -> Result<ExitCode, CliError> {
    // The handlers are installed now, before the store is opened and recovered: a SIGTERM at any moment stops the server
    // the orderly way instead of killing it.
    use tokio::signal::unix::{SignalKind, signal as unix_signal};
    let install =
        |kind| unix_signal(kind).map_err(|e| CliError::internal(format!("signal handler: {e}")));
    let (mut term, mut interrupt) = (
        install(SignalKind::terminate())?,
        install(SignalKind::interrupt())?,
    );
    let (instance, store) = open_for_server(config).await?;
    let settings = Arc::new(settings(&instance)?);

    // Other processes of this instance (the CLI, runs' callbacks) wake the dispatcher through the
    // socket, or on a PostgreSQL store (shared with servers on other nodes) through its wake
    // channel; use cases in this process wake the same signal directly.
    let signal = WakeSignal::new();
    let mut listeners = Vec::new();
    // The socket appears once start-up recovery is done: its existence means "ready".
    let ready = || {
        let socket = wake::bind(&settings.wake_socket)
            .map_err(|e| format!("wake socket {}: {e}", settings.wake_socket.display()))?;
        listeners.push(wake::listen(socket, signal.clone()));
        if let StoreLocation::Postgres(url) = &instance.store {
            let listener = wake::listen_postgres(url, signal.clone())
                .map_err(|e| format!("wake-up listener: {e}"))?;
            listeners.push(listener);
        }
        Ok(())
    };
    let shutdown = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
    };
    let served = mission_engine::server::serve(
        store.clone(),
        settings.clone(),
        Arc::new(SystemClock),
        signal.clone(),
        ready,
        shutdown,
    )
    .await;
    for listener in listeners {
        listener.abort();
    }
    let _ = std::fs::remove_file(&settings.wake_socket);
    served.map_err(|e| CliError::internal(e.to_string()))?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
