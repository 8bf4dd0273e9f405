//! Store errors. Input errors (a missing ticket, an illegal move, a cycle) are distinct from
//! store failures (a corrupt file, a newer schema, an I/O error) so that the edges can map them to
//! different exit codes and HTTP statuses. How a backend's own errors map onto these is the
//! backend's business (`sqlite/error.rs`, `postgres/error.rs`); nothing here knows a database's
//! error codes: `From<sqlx::Error>` hands a database error to the backend that raised it.

use mission_core::evidence::EvidenceError;
use mission_core::inbox::InboxError;
use mission_core::incident::IncidentError;
use mission_core::review::ReviewRefusal;
use mission_core::{
    Attempt, InboxId, IncidentId, RunId, TicketId, TransitionError, ValidationError,
};

/// A backend's error, kept whole as the source of a `StoreError`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no ticket {0}")]
    NotFound(TicketId),
    #[error("{id}: {source}")]
    Transition {
        id: TicketId,
        #[source]
        source: TransitionError,
    },
    #[error("{id} depends on {missing}, which does not exist")]
    MissingDependency { id: String, missing: TicketId },
    #[error("dependency cycle: {}", .0.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<TicketId>),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("run {run} attempt {attempt} is not the current attempt of its ticket, or has ended")]
    Fenced { run: RunId, attempt: Attempt },
    #[error("no run {0}")]
    RunNotFound(RunId),
    #[error("{0} has no open question")]
    NoQuestion(TicketId),
    #[error("no inbox item {0}")]
    InboxNotFound(InboxId),
    #[error(transparent)]
    Inbox(#[from] InboxError),
    #[error("{ticket}: {source}")]
    Review {
        ticket: TicketId,
        #[source]
        source: ReviewRefusal,
    },
    #[error("{ticket} is no longer at attempt {attempt}: the review is out of date")]
    StaleReview { ticket: TicketId, attempt: Attempt },
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// One of the database's own guards (a unique index) refused a write that the store's checks
    /// let through: a concurrent writer got there first.
    #[error("refused by the database: {0}")]
    Constraint(#[source] BoxError),
    /// The store URL names no backend this binary has.
    #[error("{0}")]
    UnsupportedUrl(String),
    #[error(
        "the database schema is at version {found}, newer than this binary knows ({supported}); upgrade mission"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("the database is corrupt or not a Mission Control store: {0}")]
    Corrupt(String),
    /// The database cannot be reached now: it cannot be opened, stayed locked past the busy
    /// timeout, no connection became free, or an I/O error. Trying again later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    #[error("store error: {0}")]
    Backend(#[source] BoxError),
    #[error("no incident {0}")]
    IncidentNotFound(IncidentId),
    /// The core refused a change of an incident (already resolved, no reason given).
    #[error("incident {id}: {source}")]
    Incident {
        id: IncidentId,
        #[source]
        source: IncidentError,
    },
}

/// What kind of failure a `StoreError` is, for the edges: an exit code, an HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No such ticket or run, or no open question (404).
    NotFound,
    /// The request contradicts the current state: an illegal transition, a fenced report, a
    /// write a database guard refused (409).
    Conflict,
    /// The request itself is wrong: a validation error, a missing dependency, a cycle, an
    /// unsupported store URL (400/422).
    Invalid,
    /// The database cannot be reached now (503).
    Unavailable,
    /// The store failed: corrupt, a newer schema, a backend error (500).
    Internal,
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound(_)
            | StoreError::RunNotFound(_)
            | StoreError::NoQuestion(_)
            | StoreError::IncidentNotFound(_)
            | StoreError::InboxNotFound(_) => ErrorKind::NotFound,
            StoreError::Incident {
                source: IncidentError::AlreadyResolved(_),
                ..
            } => ErrorKind::Conflict,
            StoreError::Incident { .. } => ErrorKind::Invalid,
            StoreError::Inbox(InboxError::Text(_) | InboxError::Unknown(..))
            | StoreError::Review {
                source: ReviewRefusal::Reason(_),
                ..
            } => ErrorKind::Invalid,
            StoreError::Transition { .. }
            | StoreError::Fenced { .. }
            | StoreError::Constraint(_)
            | StoreError::Inbox(_)
            | StoreError::Review { .. }
            | StoreError::StaleReview { .. } => ErrorKind::Conflict,
            StoreError::MissingDependency { .. }
            | StoreError::Cycle(_)
            | StoreError::Invalid(_)
            | StoreError::UnsupportedUrl(_)
            | StoreError::Evidence(_) => ErrorKind::Invalid,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::SchemaTooNew { .. } | StoreError::Corrupt(_) | StoreError::Backend(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// Whether the caller asked for something the store refuses (exit 2), as opposed to the store
    /// failing (exit 3).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::NotFound | ErrorKind::Conflict | ErrorKind::Invalid
        )
    }

    /// A failure of the store with a message of its own (no backend error to keep).
    pub fn backend(message: impl Into<String>) -> Self {
        StoreError::Backend(message.into().into())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            #[cfg(feature = "postgres")]
            sqlx::Error::Database(db)
                if crate::postgres::error::raised_by_postgres(db.as_ref()) =>
            {
                crate::postgres::error::from_database(err)
            }
            sqlx::Error::Database(_) => crate::sqlite::error::from_database(err),
            // The server could not be reached or the connection broke, no connection became free
            // in time, the pool is closed, or a connection's worker thread failed.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(err)),
            _ => StoreError::Backend(Box::new(err)),
        }
    }
}

/// A stored value this binary cannot read back: `invalid WHAT VALUE in the database` (the value
/// as `{:?}` shows it: strings quoted). The one wording of the backends' corrupt rows.
pub(crate) fn corrupt(what: &str, value: impl std::fmt::Debug) -> StoreError {
    StoreError::Corrupt(format!("invalid {what} {value:?} in the database"))
}
