//! `mission serve`: the dispatcher and runners in the foreground, until SIGTERM or ctrl-c.

use super::{open_for_server, settings};
use crate::cli::ServeArgs;
use crate::exit::CliError;
use mission_engine::SystemClock;
use mission_engine::wake::{self, WakeSignal};
use mission_store::Store;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

pub async fn run(config: Option<&Path>, _args: ServeArgs) -> Result<ExitCode, CliError> {
    let (instance, store) = open_for_server(config).await?;
    let settings = Arc::new(settings(&instance)?);
    let store: Arc<dyn Store> = Arc::new(store);
    // Other processes of this instance (the CLI, runs' callbacks) wake the dispatcher through the
    // socket; use cases in this process wake the same signal directly.
    let signal = WakeSignal::new();
    let socket = wake::bind(&settings.wake_socket).map_err(|e| {
        CliError::internal(format!(
            "wake socket {}: {e}",
            settings.wake_socket.display()
        ))
    })?;
    let listener = wake::listen(socket, signal.clone());
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
    };
    let served = mission_engine::server::serve(
        store.clone(),
        settings.clone(),
        Arc::new(SystemClock),
        signal,
        shutdown,
    )
    .await;
    listener.abort();
    let _ = std::fs::remove_file(&settings.wake_socket);
    served.map_err(|e| CliError::internal(e.to_string()))?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
