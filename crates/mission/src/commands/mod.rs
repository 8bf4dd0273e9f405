//! One module per command. Each parses its arguments into core types, calls the store and the
//! core, and prints; none holds domain rules of its own.

pub mod events;
pub mod explain;
pub mod init;
pub mod migrate;
pub mod ticket;

use crate::config::{self, Instance};
use crate::exit::CliError;
use mission_core::{Actor, TicketId, Timestamp};
use mission_store::sqlite::SqliteOptions;
use mission_store::{Change, MigrationReport, SqliteStore, Store, StoreError};
use std::path::Path;

/// Loads the configuration and opens the store, applying pending migrations.
pub async fn open(config: Option<&Path>) -> Result<(Instance, SqliteStore), CliError> {
    let instance = config::load(config)?;
    let store = connect_store(&instance, false).await?;
    migrate_store(&instance, &store).await?;
    Ok((instance, store))
}

/// Opens the store file; `create` makes it when missing.
pub async fn connect_store(instance: &Instance, create: bool) -> Result<SqliteStore, CliError> {
    let options = SqliteOptions {
        create,
        max_connections: 2,
        ..SqliteOptions::default()
    };
    SqliteStore::open(&instance.store_path, options)
        .await
        .map_err(|e| store_error(instance, e))
}

pub async fn migrate_store(
    instance: &Instance,
    store: &SqliteStore,
) -> Result<MigrationReport, CliError> {
    store.migrate().await.map_err(|e| store_error(instance, e))
}

/// A failure of the store itself, named with its file. (Input errors keep their own message.)
fn store_error(instance: &Instance, err: StoreError) -> CliError {
    if err.is_input_error() {
        err.into()
    } else {
        CliError::internal(format!("{}: {err}", instance.store_path.display()))
    }
}

/// A change made from the command line, now.
pub fn cli_change() -> Change {
    Change::new(Actor::cli(), Timestamp::now())
}

pub fn ticket_id(instance: &Instance, text: &str) -> Result<TicketId, CliError> {
    Ok(TicketId::parse_with_default(
        text,
        &instance.config.instance.key,
    )?)
}
