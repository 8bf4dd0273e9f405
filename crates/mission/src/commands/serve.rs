//! `mission serve`: the dispatcher and runners in the foreground, until SIGTERM or ctrl-c.

use super::{engine, open_for_server};
use crate::cli::ServeArgs;
use crate::exit::CliError;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, _args: ServeArgs) -> Result<ExitCode, CliError> {
    let (instance, store) = open_for_server(config).await?;
    let (store, settings, clock) = engine(&instance, store)?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
    };
    mission_engine::server::serve(store.clone(), settings, clock, shutdown)
        .await
        .map_err(|e| CliError::internal(e.to_string()))?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
