//! PostgreSQL's errors, decoded into `StoreError`: every SQLSTATE the store tells apart is named
//! here and nowhere else (https://www.postgresql.org/docs/15/errcodes-appendix.html).

use crate::StoreError;
use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;

const UNIQUE_VIOLATION: &str = "23505";
const SERIALIZATION_FAILURE: &str = "40001";
const DEADLOCK_DETECTED: &str = "40P01";
const LOCK_NOT_AVAILABLE: &str = "55P03";
const QUERY_CANCELED: &str = "57014";
const INVALID_CATALOG_NAME: &str = "3D000";
const DATA_CORRUPTED: &str = "XX001";
const INDEX_CORRUPTED: &str = "XX002";
/// Classes: connection exceptions, insufficient resources (a full disk, too many connections),
/// operator intervention (an administrator's shutdown, a server starting up), invalid
/// authorization.
const UNAVAILABLE_CLASSES: [&str; 4] = ["08", "53", "57", "28"];

/// Whether a database error came from PostgreSQL.
pub(crate) fn raised_by_postgres(err: &dyn DatabaseError) -> bool {
    err.try_downcast_ref::<PgDatabaseError>().is_some()
}

fn sqlstate(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<PgDatabaseError>()
            .map(PgDatabaseError::code),
        _ => None,
    }
}

/// Whether a unique index (or primary key) refused the write.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    sqlstate(err) == Some(UNIQUE_VIOLATION)
}

/// Decodes a database error raised by PostgreSQL (`StoreError::from` hands them here).
pub(crate) fn from_database(err: sqlx::Error) -> StoreError {
    let Some(code) = sqlstate(&err) else {
        return StoreError::Backend(Box::new(err));
    };
    match code {
        UNIQUE_VIOLATION => StoreError::Constraint(Box::new(err)),
        DATA_CORRUPTED | INDEX_CORRUPTED => StoreError::Corrupt(err.to_string()),
        // A race the database resolved by aborting this transaction, a lock waited on past the lock timeout, a
        // statement cancelled, a database that does not exist (yet), or a server that cannot be
        // used now: trying again later may succeed.
        SERIALIZATION_FAILURE
        | DEADLOCK_DETECTED
        | LOCK_NOT_AVAILABLE
        | QUERY_CANCELED
        | INVALID_CATALOG_NAME => StoreError::Unavailable(Box::new(err)),
        _ if UNAVAILABLE_CLASSES.contains(&&code[..2]) => StoreError::Unavailable(Box::new(err)),
        _ => StoreError::Backend(Box::new(err)),
    }
}
