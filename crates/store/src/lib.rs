//! The store: the `Store` trait in parts, one implementation per backend (SQLite, and PostgreSQL
//! behind the default `postgres` feature), embedded migrations. Every change is written together with its event in one transaction; every check
//! that needs the board (does the ticket exist, is the move legal from its current state, would
//! the new dependencies close a cycle) happens inside that transaction. What a change does (a
//! transition's side effects, how a run's end settles its ticket, whether a run fits the
//! capacity) is decided by `mission_core`; the store only carries it out.
//!
//! The parts: `TicketStore` (the board), `EventLog` (reading events), `DispatchStore` (what the
//! dispatcher reads and writes: capacity, candidates, decisions, claims), `RunStore` (a run's
//! reports and end, questions), `TaskRunStore` (scheduled task runs), `WebStore` (API tokens,
//! idempotency keys, the API's counts), `IncidentStore` (incidents and their occurrences),
//! `HealthStore` (heartbeats, the health snapshot, the recorded verdict), `EvidenceStore`
//! (evidence and the gate), `ReviewStore` (reviewer runs and verdicts), `InboxStore` (items,
//! deliveries, actions), `OutboxStore` (notifications for their channels), `ClusterStore` (the scheduler's lease and node heartbeats, for several
//! servers on one database) and `StoreAdmin` (migrations, closing). `Store` is their sum, used as
//! `Arc<dyn Store>` (or `&dyn Store`), whose methods
//! include every part's. Code that calls the methods on a backend's own type (`SqliteStore`)
//! imports `prelude::*` to have the parts in scope.

mod cluster;
mod dispatch;
mod error;
mod events;
mod evidence;
mod health;
mod inbox;
mod incidents;
mod migrate;
mod outbox;
#[cfg(feature = "postgres")]
pub mod postgres;
mod review;
mod runs;
pub mod sqlite;
mod tasks;
mod tickets;
mod usage;
mod web;

use async_trait::async_trait;
use mission_core::{Actor, Timestamp};
use std::sync::Arc;
use std::time::Duration;

pub use cluster::{ClusterStore, Lease, SCHEDULER_LEASE};
pub use dispatch::{CapacityFact, ClaimOutcome, ClaimRefusal, ClaimRequest, DispatchStore};
pub use error::{BoxError, ErrorKind, StoreError};
pub use events::{EventLog, EventQuery};
pub use evidence::{
    EvidenceStore, Fence, GateContext, GateOutcome, GateRequest, Observation, RecordEvidence,
};
pub use health::{
    HealthQuery, HealthSnapshot, HealthStore, InboxFacts, RecordedVerdict, ServerHeartbeat,
    WaitingTicket,
};
pub use inbox::{ActOnItem, Acted, Delivered, Expired, InboxFilter, InboxStore};
pub use incidents::{AuditPass, IncidentFilter, IncidentStore};
pub use migrate::MigrationReport;
pub use outbox::{
    DeliveryOutcome, DeliveryResult, OutboxAttempt, OutboxFilter, OutboxItem, OutboxStore,
};
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
pub use review::{RecordReview, ReviewRequest, ReviewResult, ReviewStore, Verdict};
pub use runs::{EndedRun, Heartbeat, ResumeContext, RunEnd, RunStart, RunStore};
pub use sqlite::SqliteStore;
pub use tasks::{TaskRun, TaskRunStart, TaskRunStore};
pub use tickets::{Move, TicketFilter, TicketStore, TicketSummary};
pub use usage::{
    BudgetAlert, HoldFacts, UsageGroups, UsageStore, WindowQuery, WindowUse, task_subject,
    worker_subject,
};
pub use web::{
    ApiToken, IdempotencyKey, InboxCount, NewApiToken, Reservation, RunCount, TaskOutcomeCount,
    WebStore,
};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store's traits: `use mission_store::prelude::*;` brings `Store` and every part into
/// scope.
pub mod prelude {
    pub use crate::{
        ClusterStore, DispatchStore, EventLog, EvidenceStore, HealthStore, InboxStore,
        IncidentStore, OutboxStore, ReviewStore, RunStore, Store, StoreAdmin, TaskRunStore,
        TicketStore, UsageStore, WebStore,
    };
}

/// Who made a change and when; passed to every write so that time stays injectable.
#[derive(Clone, Debug)]
pub struct Change {
    pub actor: Actor,
    pub at: Timestamp,
}

impl Change {
    pub fn new(actor: Actor, at: Timestamp) -> Self {
        Change { actor, at }
    }
}

/// Migrating and closing: the store as a database.
#[async_trait]
pub trait StoreAdmin: Send + Sync {
    /// Applies pending migrations; refuses a database whose schema is newer than this binary.
    async fn migrate(&self) -> Result<MigrationReport>;

    /// Closes connections, checkpointing what the backend needs to.
    async fn close(&self);
}

/// The whole store: every part, as one object (`Arc<dyn Store>`).
pub trait Store:
    StoreAdmin
    + TicketStore
    + EventLog
    + DispatchStore
    + RunStore
    + TaskRunStore
    + WebStore
    + IncidentStore
    + HealthStore
    + EvidenceStore
    + ReviewStore
    + InboxStore
    + OutboxStore
    + ClusterStore
    + UsageStore
{
}

impl<T> Store for T where
    T: StoreAdmin
        + TicketStore
        + EventLog
        + DispatchStore
        + RunStore
        + TaskRunStore
        + WebStore
        + IncidentStore
        + HealthStore
        + EvidenceStore
        + ReviewStore
        + InboxStore
        + OutboxStore
        + ClusterStore
        + UsageStore
        + ?Sized
{
}

/// How to open a store, whatever the backend.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Create the database if it does not exist (only `mission init` and tests do).
    pub create: bool,
    /// Pool size: 1-2 for a CLI command, more for the server.
    pub max_connections: u32,
    /// How long a writer waits for the write lock before failing.
    pub busy_timeout: Duration,
    /// A long-lived process (the server) checkpoints the SQLite write-ahead log in the
    /// background, so that no commit of its own (a claim) pays for a checkpoint. Other backends
    /// ignore it.
    pub background_checkpoint: bool,
    /// Commits return before the log reaches the disk (SQLite `synchronous=NORMAL` in WAL mode:
    /// the log is synced at the next checkpoint; PostgreSQL `synchronous_commit=off`). A crash
    /// of the process loses nothing; a crash of the machine may roll back the last commits. Only
    /// for bookkeeping whose loss is redone harmlessly — the notification sender's delivery
    /// records: a lost one means the notification is sent again, with the same id — so that it
    /// holds the writers' turn for no fsync of its own. Decisions never use it.
    pub deferred_durability: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            create: false,
            max_connections: 4,
            busy_timeout: Duration::from_secs(30),
            background_checkpoint: false,
            deferred_durability: false,
        }
    }
}

/// Opens the store named by `url`, choosing the backend by its scheme: `sqlite:PATH` (or
/// `sqlite://PATH`), `postgres://…` (or `postgresql://…`). Does not migrate: call `migrate`. A
/// URL's text is not repeated in errors, since a database URL may carry a password.
pub async fn open(url: &str, options: OpenOptions) -> Result<Arc<dyn Store>> {
    if let Some(path) = sqlite::path_of_url(url)? {
        return Ok(Arc::new(SqliteStore::open(&path, options).await?));
    }
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    if matches!(scheme, "postgres" | "postgresql") {
        #[cfg(feature = "postgres")]
        return Ok(Arc::new(PgStore::connect(url, options).await?));
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::UnsupportedUrl(
            "this binary was built without the PostgreSQL backend (the `postgres` feature)"
                .to_owned(),
        ));
    }
    Err(StoreError::UnsupportedUrl(format!(
        "unsupported store URL scheme {scheme:?}; expected sqlite:PATH or postgres://…"
    )))
}
