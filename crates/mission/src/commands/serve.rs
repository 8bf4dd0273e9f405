//! `mission serve`: the dispatcher, runners and scheduler, and the HTTP side (JSON API, dashboard,
//! metrics) in the foreground, until SIGTERM or ctrl-c.

use super::{open_for_server, open_web_store, settings};
use crate::cli::ServeArgs;
use crate::config::StoreLocation;
use crate::exit::CliError;
use mission_engine::wake::{self, WakeSignal, Waker, Wakers};
use mission_engine::{App, SystemClock};
use mission_store::postgres::wake::Notifier;
use mission_web::{Web, WebConfig};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How long requests in flight get to finish at shutdown.
const HTTP_GRACE: Duration = Duration::from_secs(5);

pub async fn run(config: Option<&Path>, args: ServeArgs) -> Result<ExitCode, CliError> {
    // The handlers are in place from the first instruction, before the store is opened and
    // recovered: a SIGTERM at any moment is a clean shutdown, never a kill.
    let handler = |kind| {
        tokio::signal::unix::signal(kind)
            .map_err(|e| CliError::internal(format!("cannot handle signals: {e}")))
    };
    let mut term = handler(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = handler(tokio::signal::unix::SignalKind::interrupt())?;
    let instance = crate::config::load(config)?;
    // One server per instance: the lock is held for the life of the process, and taken before
    // anything (the store, the wake socket) is touched.
    let _lock = super::supervisor::lock_instance(&instance.data_dir)?;
    super::supervisor::secure_data_dir(&instance)?;
    super::supervisor::harden()?;
    let store = open_for_server(&instance).await?;
    let server = &instance.config.server;
    let bind = args.bind.unwrap_or(server.bind);
    // Nothing that can launch a process is reachable from the network without a token.
    mission_web::check_bind(bind, server.auth).map_err(CliError::usage)?;
    let settings = Arc::new(settings(&instance)?);
    super::supervisor::report_sandbox(&settings);
    let signal = WakeSignal::new();
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| CliError::usage(format!("cannot listen on {bind}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::internal(format!("listening on {bind}: {e}")))?;
    // The HTTP side has its own store connections: requests can never take the dispatcher's.
    let web_store = open_web_store(&instance).await?;
    // Its use cases wake this server at once, and on a PostgreSQL store the servers of the other
    // nodes too (a NOTIFY).
    let web_waker: Arc<dyn Waker> = match &instance.store {
        StoreLocation::Sqlite(_) => Arc::new(signal.clone()),
        StoreLocation::Postgres(url) => {
            let notifier = Notifier::new(url).map_err(|e| CliError::internal(e.to_string()))?;
            Arc::new(Wakers(vec![Arc::new(signal.clone()), Arc::new(notifier)]))
        }
    };
    let web_app = App::new(
        web_store.clone(),
        settings.clone(),
        Arc::new(SystemClock),
        web_waker.clone(),
    );
    let web = Web::new(
        web_app,
        WebConfig {
            auth: server.auth,
            allowed_hosts: server.allowed_hosts.clone(),
            ..WebConfig::default()
        },
    )
    .map_err(|e| CliError::internal(format!("the HTTP side cannot start: {e}")))?;
    if server.auth {
        tracing::info!(%local, "HTTP API and dashboard listening (tokens required: `mission token create`; the dashboard's login takes one)");
    } else {
        tracing::info!(%local, "HTTP API and dashboard listening (loopback, no authentication)");
    }
    // The line tests and scripts read the address from (with port 0, the port chosen).
    eprintln!("mission: listening on http://{local}");

    // Other processes of this instance (the CLI, runs' callbacks) wake the dispatcher through the
    // socket, or on a PostgreSQL store (shared with servers on other nodes) through its wake
    // channel; use cases in this process (the HTTP side's included) wake the same signal directly.
    // The socket appears once start-up recovery is done: a socket that takes datagrams means
    // "recovered and serving".
    let mut listeners = Vec::new();
    let ready = || {
        let socket = wake::bind(&settings.wake_socket)
            .and_then(|socket| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    &settings.wake_socket,
                    std::fs::Permissions::from_mode(0o600),
                )?;
                Ok(socket)
            })
            .map_err(|e| format!("wake socket {}: {e}", settings.wake_socket.display()))?;
        listeners.push(wake::listen(socket, signal.clone()));
        if let StoreLocation::Postgres(url) = &instance.store {
            let listener = wake::listen_postgres(url, signal.clone())
                .map_err(|e| format!("wake-up listener: {e}"))?;
            listeners.push(listener);
        }
        Ok(())
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = {
        let stop = stop.clone();
        async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutdown requested");
            let _ = stop.send(true);
        }
    };
    let http_stopped = {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let http = tokio::spawn(mission_web::serve(listener, web, http_stopped, HTTP_GRACE));
    // The notification sender: its own store connections and tasks, nothing the dispatcher
    // waits for. Replies and button presses from Telegram act through the same use cases as
    // the HTTP side, and wake this server like them.
    let notify_store = open_web_store(&instance).await?;
    let notify_app = App::new(
        notify_store.clone(),
        settings.clone(),
        Arc::new(SystemClock),
        web_waker.clone(),
    );
    // The channels' delivery records are bookkeeping a redelivery makes good: their commits
    // need not wait for the disk, and so hold the writers' turn the dispatcher's claims take
    // for less (`OpenOptions::deferred_durability`).
    let deliveries = super::open_delivery_store(&instance).await?;
    let notifier = mission_engine::notify::start(
        notify_store.clone(),
        deliveries,
        notify_app,
        Arc::new(SystemClock),
        stopped.clone(),
    )
    .await
    .map_err(CliError::usage)?;
    let served = mission_engine::server::serve(
        store.clone(),
        settings.clone(),
        Arc::new(SystemClock),
        signal.clone(),
        ready,
        shutdown,
    )
    .await;
    let _ = stop.send(true);
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "the HTTP server failed"),
        Err(error) => tracing::error!(%error, "the HTTP server panicked"),
    }
    for listener in listeners {
        listener.abort();
    }
    for task in notifier {
        let _ = task.await;
    }
    notify_store.close().await;
    let _ = std::fs::remove_file(&settings.wake_socket);
    served.map_err(|e| CliError::internal(e.to_string()))?;
    web_store.close().await;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
