//! The SQLite backend: one file, WAL, `synchronous=FULL`, a busy timeout, and `BEGIN IMMEDIATE`
//! for every write so that a read-then-write transaction never loses its snapshot to another
//! writer (it waits for the write lock instead). SQLite has one writer at a time, so transactions
//! commit in the order they took the lock and event sequence numbers follow commit order.
//!
//! Each part of the `Store` trait is implemented in its own file: `tickets.rs` (`TicketStore`),
//! `events.rs` (`EventLog` and the one `append_event`), `dispatch.rs` (`DispatchStore`),
//! `runs.rs` (`RunStore`), `tasks.rs` (`TaskRunStore`), `web.rs` (`WebStore`), `incidents.rs`
//! (`IncidentStore`), `health.rs` (`HealthStore`), `evidence.rs` (`EvidenceStore`), `review.rs`
//! (`ReviewStore`), `inbox.rs` (`InboxStore`); this file opens the database and
//! implements `StoreAdmin`. `error.rs` decodes SQLite's errors, `rows.rs` decodes rows.

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
mod web;

use crate::migrate::{self, Migration, MigrationReport};
use crate::{OpenOptions, Result, StoreAdmin, StoreError};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Executor, Sqlite, SqliteConnection, Transaction};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_tickets_and_events",
        sql: include_str!("../../migrations/sqlite/0001_tickets_and_events.sql"),
    },
    Migration {
        version: 2,
        name: "0002_runs",
        sql: include_str!("../../migrations/sqlite/0002_runs.sql"),
    },
    Migration {
        version: 3,
        name: "0003_task_runs",
        sql: include_str!("../../migrations/sqlite/0003_task_runs.sql"),
    },
    Migration {
        version: 4,
        name: "0004_counters",
        sql: include_str!("../../migrations/sqlite/0004_counters.sql"),
    },
    Migration {
        version: 5,
        name: "0005_web",
        sql: include_str!("../../migrations/sqlite/0005_web.sql"),
    },
    Migration {
        version: 6,
        name: "0006_incidents_health",
        sql: include_str!("../../migrations/sqlite/0006_incidents_health.sql"),
    },
    Migration {
        version: 7,
        name: "0007_evidence_inbox",
        sql: include_str!("../../migrations/sqlite/0007_evidence_inbox.sql"),
    },
    Migration {
        version: 8,
        name: "0008_health_reads",
        sql: include_str!("../../migrations/sqlite/0008_health_reads.sql"),
    },
    Migration {
        version: 9,
        name: "0009_outbox",
        sql: include_str!("../../migrations/sqlite/0009_outbox.sql"),
    },
    Migration {
        version: 10,
        name: "0010_usage",
        sql: include_str!("../../migrations/sqlite/0010_usage.sql"),
    },
    Migration {
        version: 11,
        name: "0011_usage_reads",
        sql: include_str!("../../migrations/sqlite/0011_usage_reads.sql"),
    },
];

/// How to open the database file.
pub type SqliteOptions = OpenOptions;

/// How often the server's background task checkpoints the write-ahead log.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Copies the write-ahead log's pages back into the database file, off every commit's path: a
/// PASSIVE checkpoint never blocks a writer. Runs until the pool is closed.
async fn checkpoint_in_background(pool: SqlitePool) {
    loop {
        tokio::time::sleep(CHECKPOINT_INTERVAL).await;
        if pool.is_closed() {
            return;
        }
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(%error, "background checkpoint failed");
        }
    }
}

pub struct SqliteStore {
    pool: SqlitePool,
    /// This process's writers take turns here, first come first served, before they ask SQLite
    /// for its write lock. SQLite has one writer; a writer that finds the lock taken sleeps in
    /// SQLite's busy handler (1 ms, 2, 5 … up to 100 ms a try), so under a steady stream of
    /// other writes (the notification sender draining a backlog) an unlucky writer — a claim —
    /// waited for hundreds of milliseconds. Queued here it waits for the transactions ahead of
    /// it only. The turn is the database file's, shared by every store this process has open on
    /// it (`mission serve` has four: the dispatcher's, the HTTP side's, the sender's and its
    /// channels' deliveries'). Writers of other processes (the CLI) still meet the busy handler.
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// The writers' turn of the database file at `path`, shared by every store of this process on
/// that file (its canonical path), made when the first is opened.
fn turn_of(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    type Turns = std::sync::Mutex<HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>>;
    static TURNS: OnceLock<Turns> = OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut turns = TURNS
        .get_or_init(Turns::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(turn) = turns.get(&key).and_then(Weak::upgrade) {
        return turn;
    }
    // Forget the files no store has open any more.
    turns.retain(|_, turn| turn.strong_count() > 0);
    let turn = Arc::new(tokio::sync::Mutex::new(()));
    turns.insert(key, Arc::downgrade(&turn));
    turn
}

/// A write transaction holding its writer's turn until it commits or is dropped. Derefs to the
/// connection, like `sqlx::Transaction`.
pub(crate) struct WriteTx<'a> {
    tx: Transaction<'static, Sqlite>,
    _turn: tokio::sync::MutexGuard<'a, ()>,
    timing: WriteTiming,
}

/// When a write transaction asked for its turn, got it, and had SQLite's write lock: a slow
/// transaction says at debug level which of its steps took the time (every one does when the
/// store logs at trace level).
struct WriteTiming {
    asked: std::time::Instant,
    turn: std::time::Duration,
    begin: std::time::Duration,
}

/// A write transaction slower than this, from asking for its turn to its commit, is logged.
const SLOW_WRITE: std::time::Duration = std::time::Duration::from_millis(20);

impl WriteTx<'_> {
    pub(crate) async fn commit(self) -> std::result::Result<(), sqlx::Error> {
        let before_commit = self.timing.asked.elapsed();
        let committed = self.tx.commit().await;
        let total = self.timing.asked.elapsed();
        let slow = total > SLOW_WRITE;
        if slow || tracing::enabled!(tracing::Level::TRACE) {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            let (turn, begin) = (self.timing.turn, self.timing.begin);
            tracing::debug!(
                slow,
                total_ms = ms(total),
                turn_ms = ms(turn),
                begin_ms = ms(begin),
                body_ms = ms(before_commit - turn - begin),
                commit_ms = ms(total - before_commit),
                "write transaction"
            );
        }
        committed
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// The file a `sqlite:PATH` (or `sqlite://PATH`) URL names; `None` for another scheme.
pub(crate) fn path_of_url(url: &str) -> Result<Option<PathBuf>> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(None);
    };
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.is_empty() {
        return Err(StoreError::UnsupportedUrl(
            "the sqlite: URL names no file".to_owned(),
        ));
    }
    Ok(Some(PathBuf::from(path)))
}

impl SqliteStore {
    /// Opens (and with `create`, creates) the database file. Does not migrate: call `migrate`.
    pub async fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        if !options.create && !path.exists() {
            return Err(StoreError::Unavailable(
                format!("no store at {} (run `mission init` first)", path.display()).into(),
            ));
        }
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(options.create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if options.deferred_durability {
                SqliteSynchronous::Normal
            } else {
                SqliteSynchronous::Full
            })
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        let connect = if options.background_checkpoint {
            // No commit of this process checkpoints; the task below does.
            connect.pragma("wal_autocheckpoint", "0")
        } else {
            connect
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect_with(connect)
            .await?;
        if options.background_checkpoint {
            tokio::spawn(checkpoint_in_background(pool.clone()));
        }
        Ok(SqliteStore {
            pool,
            turn: turn_of(path),
        })
    }

    /// A write transaction, holding the write lock from its first statement, begun in this
    /// process's writers' turn (see `turn`).
    async fn write_tx(&self) -> Result<WriteTx<'_>> {
        let asked = std::time::Instant::now();
        let turn = self.write_turn().await;
        let turned = asked.elapsed();
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx {
            tx,
            _turn: turn,
            timing: WriteTiming {
                asked,
                turn: turned,
                begin: asked.elapsed() - turned,
            },
        })
    }

    /// This process's turn to write (for a single statement outside a transaction, too).
    async fn write_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// A read transaction: every statement in it reads the snapshot taken by its first one.
    async fn read_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin().await?)
    }

    async fn schema_version(conn: &mut SqliteConnection) -> Result<i64> {
        let has_table: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
        )
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
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
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
impl StoreAdmin for SqliteStore {
    async fn migrate(&self) -> Result<MigrationReport> {
        let mut tx = self.write_tx().await?;
        let found = SqliteStore::schema_version(&mut tx).await?;
        let supported = migrate::latest(MIGRATIONS);
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations ( \
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let mut applied = Vec::new();
        for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
            tx.execute(migration.sql).await?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TicketStore;
    use mission_core::{Actor, TicketDraft, TicketKey, Timestamp};
    use std::time::Duration;

    async fn open(path: &Path) -> SqliteStore {
        let store = SqliteStore::open(
            path,
            OpenOptions {
                create: true,
                ..OpenOptions::default()
            },
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        store
    }

    async fn add(store: &SqliteStore) -> Result<()> {
        let draft = TicketDraft {
            title: "t".to_owned(),
            ..TicketDraft::default()
        }
        .validate()
        .unwrap();
        let change = crate::Change::new(Actor::new("test"), Timestamp::from_millis(1));
        store
            .create_tickets(&TicketKey::default(), vec![draft], &change)
            .await
            .map(|_| ())
    }

    #[tokio::test]
    async fn the_stores_of_one_file_take_one_turn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mission.db");
        let a = Arc::new(open(&path).await);
        let b = Arc::new(open(&dir.path().join(".").join("mission.db")).await);
        let other = open(&dir.path().join("other.db")).await;
        assert!(Arc::ptr_eq(&a.turn, &b.turn), "one file, one turn");
        assert!(!Arc::ptr_eq(&a.turn, &other.turn));

        // While a writer of `a` has the turn, `b`'s writer waits in line (not in SQLite's busy
        // handler: its lock is free), and writes once the turn passes to it.
        let held = a.write_turn().await;
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { add(&b).await }
        });
        add(&other).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "b's writer waits for a's turn");
        drop(held);
        waiting.await.unwrap().unwrap();
        let numbers: Vec<i64> = sqlx::query_scalar("SELECT number FROM tickets")
            .fetch_all(&a.pool)
            .await
            .unwrap();
        assert_eq!(numbers, [1]);
    }

    #[tokio::test]
    async fn only_a_store_opened_for_deferred_durability_commits_without_waiting_for_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mission.db");
        let durable = open(&path).await;
        let deferred = SqliteStore::open(
            &path,
            OpenOptions {
                deferred_durability: true,
                ..OpenOptions::default()
            },
        )
        .await
        .unwrap();
        // SQLite's `synchronous`: 2 FULL (every commit syncs the log), 1 NORMAL (in WAL mode, the
        // log is synced at checkpoints).
        let level = |store: &SqliteStore| {
            let pool = store.pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>("PRAGMA synchronous")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(level(&durable).await, 2);
        assert_eq!(level(&deferred).await, 1);
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&deferred.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal", "NORMAL is crash-safe only in WAL mode");
    }
}
