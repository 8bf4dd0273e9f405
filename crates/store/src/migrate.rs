//! Embedded migrations. Each backend has its own ordered list of SQL files, compiled into the
//! binary; the `schema_migrations` table records which ran. A database that records a version this
//! binary does not know is refused before anything is written.

use serde::Serialize;

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// What `migrate` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    /// The schema version before.
    pub from_version: i64,
    /// The schema version now.
    pub to_version: i64,
    /// Names of the migrations applied by this call, in order.
    pub applied: Vec<String>,
}

pub(crate) fn latest(migrations: &[Migration]) -> i64 {
    migrations.last().map_or(0, |m| m.version)
}
