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
    // Shared with the notification sender's thread.
    let instance = Arc::new(crate::config::load(config)?);
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
    // The notification sender: its own thread, runtime, store connections and tasks, nothing
    // the dispatcher waits for (`notify_thread`). Replies and button presses from Telegram act
    // through the same use cases as the HTTP side, and wake this server like them.
    let (notify_started, sender_started) = tokio::sync::oneshot::channel();
    let sender = {
        let (instance, settings) = (instance.clone(), settings.clone());
        let (waker, stopped) = (web_waker.clone(), stopped.clone());
        std::thread::Builder::new()
            .name(NOTIFY_THREAD.to_owned())
            .spawn(move || notify_thread(instance, settings, waker, stopped, notify_started))
            .map_err(|e| CliError::internal(format!("cannot start the notification sender: {e}")))?
    };
    sender_started
        .await
        .map_err(|_| CliError::internal("the notification sender did not start"))??;
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
    if tokio::task::spawn_blocking(move || sender.join())
        .await
        .map_or(true, |joined| joined.is_err())
    {
        tracing::error!("the notification sender panicked");
    }
    let _ = std::fs::remove_file(&settings.wake_socket);
    served.map_err(|e| CliError::internal(e.to_string()))?;
    web_store.close().await;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// The notification sender's thread's name.
pub const NOTIFY_THREAD: &str = "mission-notify";

/// How much lower than the server's the notification sender's CPU priority is (nice values).
const NOTIFY_NICENESS: i32 = 10;

/// The notification sender, on a thread of its own at a lower CPU priority (`NOTIFY_NICENESS`),
/// with a runtime of its own: its HTTP work, signing and store bookkeeping yield the machine's
/// cores to the dispatcher and the runs it starts (on two cores, a drain at 600 a second took a
/// share of every pickup). Its stores are opened here, so that their connection threads inherit
/// the priority. Reports its start on `started`; returns when `stopped` turns true and its tasks
/// ended.
fn notify_thread(
    instance: Arc<crate::config::Instance>,
    settings: Arc<mission_engine::Settings>,
    waker: Arc<dyn Waker>,
    stopped: tokio::sync::watch::Receiver<bool>,
    started: tokio::sync::oneshot::Sender<Result<(), CliError>>,
) {
    // On Linux a nice value is a thread's own; no pid names the calling thread. Relative to the
    // server's own (19 is the lowest).
    let niceness = rustix::process::getpriority_process(None).and_then(|own| {
        rustix::process::setpriority_process(None, (own + NOTIFY_NICENESS).min(19))
    });
    if let Err(error) = niceness {
        tracing::warn!(%error, "the notification sender keeps the server's CPU priority");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = started.send(Err(CliError::internal(format!(
                "cannot start the notification sender: {error}"
            ))));
            return;
        }
    };
    runtime.block_on(async move {
        let opened = async {
            let notify_store = open_web_store(&instance).await?;
            let app = App::new(notify_store.clone(), settings, Arc::new(SystemClock), waker);
            // The channels' delivery records are bookkeeping a redelivery makes good: their
            // commits need not wait for the disk, and so hold the writers' turn the
            // dispatcher's claims take for less (`OpenOptions::deferred_durability`).
            let deliveries = super::open_delivery_store(&instance).await?;
            let tasks = mission_engine::notify::start(
                notify_store.clone(),
                deliveries.clone(),
                app,
                Arc::new(SystemClock),
                stopped,
            )
            .await
            .map_err(CliError::usage)?;
            Ok::<_, CliError>((notify_store, deliveries, tasks))
        }
        .await;
        match opened {
            Err(error) => {
                let _ = started.send(Err(error));
            }
            Ok((notify_store, deliveries, tasks)) => {
                let _ = started.send(Ok(()));
                for task in tasks {
                    let _ = task.await;
                }
                deliveries.close().await;
                notify_store.close().await;
            }
        }
    });
}
