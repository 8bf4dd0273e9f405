//! Store errors. Input errors (a missing ticket, an illegal move, a cycle) are distinct from
//! store failures (a corrupt file, a newer schema, an I/O error) so that the edges can map them to
//! different exit codes and HTTP statuses.

use mission_core::{Attempt, RunId, TicketId, TransitionError, ValidationError};

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
    #[error(
        "the database schema is at version {found}, newer than this binary knows ({supported}); upgrade mission"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("the database is corrupt or not a Mission Control store: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether the caller asked for something the store refuses (exit 2), as opposed to the store
    /// failing (exit 3).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            StoreError::NotFound(_)
                | StoreError::Transition { .. }
                | StoreError::MissingDependency { .. }
                | StoreError::Cycle(_)
                | StoreError::Invalid(_)
                | StoreError::Fenced { .. }
                | StoreError::RunNotFound(_)
                | StoreError::NoQuestion(_)
        )
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            // SQLITE_CORRUPT (11) and SQLITE_NOTADB (26), with extended codes.
            let primary = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .map(|c| c & 0xff);
            if matches!(primary, Some(11) | Some(26)) {
                return StoreError::Corrupt(db.message().to_owned());
            }
        }
        StoreError::Backend(err.to_string())
    }
}
