//! One module per command. Each turns its arguments into core types, calls one use case of
//! `mission_engine::App`, and prints; none holds domain rules of its own.

pub mod dispatch;
pub mod events;
pub mod explain;
pub mod inbox;
pub mod incident;
pub mod init;
pub mod migrate;
pub mod notify;
pub mod run;
pub mod serve;
pub mod status;
pub mod supervisor;
pub mod task;
pub mod ticket;
pub mod token;
pub mod usage;

use crate::config::{self, Instance, StoreLocation};
use crate::exit::CliError;
use mission_core::{Actor, Timestamp};
use mission_engine::wake::{SocketWaker, Waker};
use mission_engine::{App, Settings, SystemClock};
use mission_store::postgres::wake::Notifier;
use mission_store::prelude::*;
use mission_store::{Change, MigrationReport, OpenOptions, StoreError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Loads the configuration and opens the use cases over the store (migrated), waking the servers
/// of this instance: through the wake socket for a SQLite store (one server, on this host), with
/// a `NOTIFY` for a PostgreSQL store (every server, on any node).
pub async fn app(config: Option<&Path>) -> Result<(Instance, App), CliError> {
    let (instance, store) = open(config).await?;
    let settings = Arc::new(settings(&instance)?);
    // Facts recorded by this command are queued for the channels configured now.
    mission_engine::notify::sync_subscriptions(store.as_ref(), &settings.notify)
        .await
        .map_err(|e| store_error(&instance, e))?;
    let waker: Arc<dyn Waker> = match &instance.store {
        StoreLocation::Sqlite(_) => Arc::new(SocketWaker::new(settings.wake_socket.clone())),
        StoreLocation::Postgres(url) => {
            let notifier = Notifier::new(url).map_err(|e| store_error(&instance, e))?;
            let _ = NOTIFIER.set(notifier.clone());
            Arc::new(notifier)
        }
    };
    let app = App::new(store, settings, Arc::new(SystemClock), waker);
    Ok((instance, app))
}

/// The notifier of this command's use cases, when its store is PostgreSQL: it sends in the
/// background, so the command waits for it before exiting (`flush_wakes`).
static NOTIFIER: OnceLock<Notifier> = OnceLock::new();

/// Waits until the wake-ups this command asked for are sent.
pub async fn flush_wakes() {
    if let Some(notifier) = NOTIFIER.get() {
        notifier.flush().await;
    }
}

/// Loads the configuration and opens the store, applying pending migrations.
pub async fn open(config: Option<&Path>) -> Result<(Instance, Arc<dyn Store>), CliError> {
    let instance = config::load(config)?;
    let store = connect_store(&instance, false).await?;
    migrate_store(&instance, &store).await?;
    Ok((instance, store))
}

/// Opens the store for the server: the same checks, more connections.
pub async fn open_for_server(instance: &Instance) -> Result<Arc<dyn Store>, CliError> {
    let options = OpenOptions {
        max_connections: SERVER_CONNECTIONS,
        background_checkpoint: true,
        ..OpenOptions::default()
    };
    let store = open_store(instance, options).await?;
    migrate_store(instance, &store).await?;
    Ok(store)
}

/// The HTTP side's own store connections (beside the server's), so that requests can never
/// take the connections the dispatcher and runners need. The store is already migrated. Its
/// commits never checkpoint SQLite's log either: a checkpoint run by a commit holds the
/// writers' turn the dispatcher's claims wait for.
pub async fn open_web_store(instance: &Instance) -> Result<Arc<dyn Store>, CliError> {
    let options = OpenOptions {
        max_connections: WEB_CONNECTIONS,
        background_checkpoint: true,
        ..OpenOptions::default()
    };
    open_store(instance, options).await
}

/// The store the notification sender's channels record their deliveries on: commits that do not
/// wait for the disk (`OpenOptions::deferred_durability`), nor checkpoint the log.
pub async fn open_delivery_store(instance: &Instance) -> Result<Arc<dyn Store>, CliError> {
    let options = OpenOptions {
        max_connections: CLI_CONNECTIONS,
        background_checkpoint: true,
        deferred_durability: true,
        ..OpenOptions::default()
    };
    open_store(instance, options).await
}

/// Connections of a one-shot command's store pool, of the server's, and of its HTTP side's.
const CLI_CONNECTIONS: u32 = 2;
const SERVER_CONNECTIONS: u32 = 8;
const WEB_CONNECTIONS: u32 = 4;

/// Opens the store; `create` makes a SQLite file when missing (a PostgreSQL database must exist).
pub async fn connect_store(instance: &Instance, create: bool) -> Result<Arc<dyn Store>, CliError> {
    let options = OpenOptions {
        create,
        max_connections: CLI_CONNECTIONS,
        ..OpenOptions::default()
    };
    open_store(instance, options).await
}

async fn open_store(instance: &Instance, options: OpenOptions) -> Result<Arc<dyn Store>, CliError> {
    mission_store::open(&instance.store.url(), options)
        .await
        .map_err(|e| store_error(instance, e))
}

pub async fn migrate_store(
    instance: &Instance,
    store: &Arc<dyn Store>,
) -> Result<MigrationReport, CliError> {
    store.migrate().await.map_err(|e| store_error(instance, e))
}

/// A failure of the store itself, named with its file or database. (Input errors keep their own
/// message.)
fn store_error(instance: &Instance, err: StoreError) -> CliError {
    if err.is_input_error() {
        err.into()
    } else {
        CliError::internal(format!("{}: {err}", instance.store.display()))
    }
}

/// A change made from the command line, now (`init --demo`).
pub fn cli_change() -> Change {
    Change::new(Actor::cli(), Timestamp::now())
}

/// The engines' resolved settings: the same for the server, a scheduled task and the CLI.
pub fn settings(instance: &Instance) -> Result<Settings, CliError> {
    let dispatch = instance.config.dispatch.clone();
    let node = dispatch.node.clone().unwrap_or_else(host_name);
    let mission_bin = std::env::current_exe()
        .map_err(|e| CliError::internal(format!("cannot find the mission binary: {e}")))?;
    Ok(Settings {
        workforce: instance.workforce.clone(),
        dispatch,
        ticket_key: instance.config.instance.key.clone(),
        triage: instance.triage.clone(),
        tasks_dir: instance.dir.join("tasks"),
        instance_dir: instance.dir.clone(),
        config_file: instance.config_file.clone(),
        runs_dir: instance.data_dir.join("runs"),
        workspaces_dir: instance.data_dir.join("workspaces"),
        node,
        mission_bin: mission_bin.clone(),
        wake_socket: wake_socket(instance),
        health: instance.config.health.clone(),
        audit: instance.audit.clone(),
        gate: mission_engine::settings::GateSettings::from_config(&instance.config),
        sandbox: mission_engine::sandbox::SandboxSettings {
            launcher: Some(mission_engine::sandbox::launcher_beside(&mission_bin)),
            landlock: mission_engine::sandbox::probe(),
            homes_dir: instance.data_dir.join("homes"),
        },
        prompts: instance.prompts.clone(),
        notify: instance.notify.clone(),
    })
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn wake_socket(instance: &Instance) -> PathBuf {
    instance.data_dir.join("wake.sock")
}
