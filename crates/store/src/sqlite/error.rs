//! SQLite's errors, decoded into `StoreError`: every SQLite result code the store tells apart is
//! named here and nowhere else.

use crate::StoreError;

// Primary result codes (https://www.sqlite.org/rescode.html).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_NOTADB: i32 = 26;
// Extended result codes.
const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;

/// The extended result code of a database error.
fn extended_code(err: &sqlx::Error) -> Option<i32> {
    match err {
        sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i32>().ok()),
        _ => None,
    }
}

/// Whether a unique index (or primary key) refused the write.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(
        extended_code(err),
        Some(SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}

/// Decodes a database error raised by SQLite (`StoreError::from` hands them here).
pub(crate) fn from_database(err: sqlx::Error) -> StoreError {
    let sqlx::Error::Database(db) = &err else {
        return StoreError::Backend(Box::new(err));
    };
    let primary = extended_code(&err).map(|c| c & 0xff);
    match primary {
        Some(SQLITE_CORRUPT | SQLITE_NOTADB) => StoreError::Corrupt(db.message().to_owned()),
        // Locked past the busy timeout, an I/O error, a full disk, a file that cannot be opened:
        // the database is there but cannot be used now.
        Some(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN) => {
            StoreError::Unavailable(Box::new(err))
        }
        _ if is_unique_violation(&err) => StoreError::Constraint(Box::new(err)),
        _ => StoreError::Backend(Box::new(err)),
    }
}
