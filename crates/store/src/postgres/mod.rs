//! The PostgreSQL backend, for several servers sharing one database. Writers run concurrently
//! here, so the guarantees SQLite has by construction (one writer at a time) are made explicit:
//!
//! - **Event order.** Every transaction that may write an event takes the `event_seq` counter
//!   row first (`write_tx`: `SELECT … FOR UPDATE`), and `append_event` takes its number from that
//!   row. The lock is held until commit, so event-writing transactions run one after another and
//!   sequence numbers follow commit order, densely (ARCHITECTURE.md, "Event order with concurrent
//!   writers"). It is the counterpart of SQLite's `BEGIN IMMEDIATE`: under it, a read-then-write
//!   transaction never acts on a stale read, since every statement of READ COMMITTED sees what
//!   the writers before it committed.
//! - **Claims** are such transactions: a pass's tickets are locked (`FOR UPDATE`, one statement)
//!   and capacity is re-counted under the counter's lock, which every claim and every end of a run
//!   holds, so no two claimers, on any number of nodes, count the same free slot; each claim of
//!   the batch then counts on the ones before it. The partial unique index on
//!   live runs stays the last guard.
//! - **Writes without an event** (heartbeats, pids, sessions, cursors, task run pids, the
//!   scheduler's lease, node heartbeats, server heartbeats, API tokens, idempotency keys, a
//!   review request closed without a verdict) do not take the counter; each locks only the one
//!   row it changes, so no lock cycle with the event writers can form.
//! - **Reads of more than one statement** (`touched_tickets`, a ticket with its dependencies) run
//!   in one REPEATABLE READ snapshot.
//!
//! - **The inbox, evidence, reviews, incidents and the verdict** change only in `write_tx`s (each
//!   change writes its event), so what SQLite decides under its write lock (an item read, then
//!   acted on; a request still open, then closed; an incident found, then reopened) is decided
//!   here under the counter's lock, which every other writer of those rows holds too. The few
//!   writes of those tables without an event (closing a review request whose run ended) lock the
//!   row they change, and the deciding transaction locks it first. Unique constraints (one
//!   incident per fingerprint, one action per item, one token per delivery) stay the last guard,
//!   and triggers keep an inbox item honest whatever the code does.
//!
//! Each part of the `Store` trait is implemented in its own file, as in `sqlite/`: `tickets.rs`,
//! `events.rs`, `dispatch.rs`, `runs.rs`, `tasks.rs`, `web.rs`, `incidents.rs`, `health.rs`,
//! `evidence.rs`, `review.rs`, `inbox.rs`, `cluster.rs` (the scheduler's lease, node heartbeats);
//! this file connects and implements `StoreAdmin`. `error.rs` decodes PostgreSQL's
//! errors, `rows.rs` decodes rows, `wake.rs` carries wake-ups between nodes (LISTEN/NOTIFY).

mod cluster;
mod dispatch;
pub(crate) mod error;
mod events;
mod evidence;
mod health;
mod inbox;
mod incidents;
mod outbox;
mod review;
mod rows;
mod runs;
mod tasks;
mod tickets;
mod usage;
pub mod wake;
mod web;

use crate::migrate::{self, Migration, MigrationReport};
use crate::{OpenOptions, Result, StoreAdmin, StoreError};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_schema",
        sql: include_str!("../../migrations/postgres/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "0002_cluster",
        sql: include_str!("../../migrations/postgres/0002_cluster.sql"),
    },
    Migration {
        version: 3,
        name: "0003_web",
        sql: include_str!("../../migrations/postgres/0003_web.sql"),
    },
    Migration {
        version: 4,
        name: "0004_incidents_health",
        sql: include_str!("../../migrations/postgres/0004_incidents_health.sql"),
    },
    Migration {
        version: 5,
        name: "0005_evidence_inbox",
        sql: include_str!("../../migrations/postgres/0005_evidence_inbox.sql"),
    },
    Migration {
        version: 6,
        name: "0006_health_reads",
        sql: include_str!("../../migrations/postgres/0006_health_reads.sql"),
    },
    Migration {
        version: 7,
        name: "0007_outbox",
        sql: include_str!("../../migrations/postgres/0007_outbox.sql"),
    },
    Migration {
        version: 8,
        name: "0008_usage",
        sql: include_str!("../../migrations/postgres/0008_usage.sql"),
    },
    Migration {
        version: 9,
        name: "0009_usage_totals",
        sql: include_str!("../../migrations/postgres/0009_usage_totals.sql"),
    },
];

/// The first half of the key of the advisory lock that serializes migrations of one store
/// (several servers may start at once); the second is the hash of the store's schema, so that
/// stores in other schemas of the database migrate independently.
const MIGRATION_LOCK: i32 = 0x4d49_5353; // "MISS" in ASCII

/// A transaction left idle this long is ended by the server: a client that stopped in the middle
/// of one (a paused or partitioned node) cannot hold the event counter, and with it every writer,
/// for longer. The store's own transactions last milliseconds.
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PgStore {
    pool: PgPool,
}

fn millis_text(d: Duration) -> String {
    d.as_millis().to_string()
}

impl PgStore {
    /// Connects to the database `url` names (it must exist: `createdb`, or an administrator).
    /// Does not migrate: call `migrate`. `options.create` has no meaning here.
    pub async fn connect(url: &str, options: OpenOptions) -> Result<PgStore> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|_| {
                // The parser's message may repeat the URL, which may carry a password.
                StoreError::UnsupportedUrl("the postgres:// URL cannot be parsed".to_owned())
            })?
            .application_name("mission")
            .options([
                // A writer waits for the event counter (or a row) at most this long, like
                // SQLite's busy timeout.
                ("lock_timeout", millis_text(options.busy_timeout)),
                (
                    "idle_in_transaction_session_timeout",
                    millis_text(IDLE_IN_TRANSACTION_TIMEOUT),
                ),
                (
                    "synchronous_commit",
                    if options.deferred_durability {
                        "off"
                    } else {
                        "on"
                    }
                    .to_owned(),
                ),
            ]);
        // One connection first, so that a server that cannot be reached (or a database that does
        // not exist) is reported as what it is, not as the pool's timeout after its retries.
        let first = tokio::time::timeout(options.busy_timeout, connect.connect())
            .await
            .map_err(|_| StoreError::Unavailable("connecting timed out".into()))??;
        first.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.busy_timeout)
            .connect_with(connect)
            .await?;
        Ok(PgStore { pool })
    }

    /// A transaction that may write events: it holds the event counter's row lock from its first
    /// statement to its commit, so event-writing transactions commit one at a time, in the order
    /// of their sequence numbers.
    async fn write_tx(&self) -> Result<Transaction<'static, Postgres>> {
        // Two round trips, not one `BEGIN; SELECT … FOR UPDATE`: a lock timeout in such a
        // statement leaves its pooled connection in an aborted transaction, which the next
        // user of the connection then meets (`a_write_blocked_past_the_lock_timeout_is_unavailable`).
        let mut tx = self.pool.begin().await?;
        let locked: Option<i64> =
            sqlx::query_scalar("SELECT value FROM counters WHERE name = $1 FOR UPDATE")
                .bind(events::EVENT_SEQ_COUNTER)
                .fetch_optional(&mut *tx)
                .await?;
        if locked.is_none() {
            return Err(StoreError::Corrupt(
                "the event sequence counter is missing".to_owned(),
            ));
        }
        Ok(tx)
    }

    /// A transaction that writes no event: it locks only the rows it changes.
    async fn row_tx(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// A read transaction: every statement in it reads one snapshot.
    async fn read_tx(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?)
    }

    async fn schema_version(conn: &mut PgConnection) -> Result<i64> {
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
                .fetch_one(&mut *conn)
                .await?;
        if has_table {
            let version: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
                    .fetch_one(&mut *conn)
                    .await?;
            return Ok(version.unwrap_or(0));
        }
        let other_tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_one(&mut *conn)
        .await?;
        if other_tables > 0 {
            return Err(StoreError::Corrupt(
                "it has tables but no schema_migrations".to_owned(),
            ));
        }
        Ok(0)
    }
}

#[async_trait]
impl StoreAdmin for PgStore {
    async fn migrate(&self) -> Result<MigrationReport> {
        let mut tx = self.pool.begin().await?;
        // Servers starting together migrate one after another; the later ones find the schema
        // current.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        let found = PgStore::schema_version(&mut tx).await?;
        let supported = migrate::latest(MIGRATIONS);
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations ( \
                 version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let mut applied = Vec::new();
        for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
            tx.execute(migration.sql).await?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(migration.version)
            .bind(migration.name)
            .bind(mission_core::Timestamp::now().as_millis())
            .execute(&mut *tx)
            .await?;
            applied.push(migration.name.to_owned());
        }
        tx.commit().await?;
        if !applied.is_empty() {
            tracing::info!(
                from_version = found,
                to_version = supported,
                "store migrated"
            );
        }
        Ok(MigrationReport {
            from_version: found,
            to_version: supported,
            applied,
        })
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
