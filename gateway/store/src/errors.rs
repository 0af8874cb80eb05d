//! Mapping of database errors onto `RepoError`: a backend that cannot be reached is
//! `Unavailable` (the API answers 503 and clients retry); everything else is `Other` with the
//! cause text, which the service logs and never shows a client.

use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr};
use snapgate_core::ports::RepoError;

pub(crate) fn db_error(err: DbErr) -> RepoError {
    let unavailable = match &err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            is_connection_error(e)
        }
        _ => false,
    };
    if unavailable {
        RepoError::Unavailable(err.to_string())
    } else {
        RepoError::Other(err.to_string())
    }
}

/// Errors of pool creation and of the test helpers, which talk to sqlx directly.
pub(crate) fn sqlx_error(err: sqlx::Error) -> RepoError {
    if is_connection_error(&err) {
        RepoError::Unavailable(err.to_string())
    } else {
        RepoError::Other(err.to_string())
    }
}

fn is_connection_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_unavailable_code(&code)),
        _ => false,
    }
}

/// Database error codes that mean "try again later" rather than "this request is wrong".
fn is_unavailable_code(code: &str) -> bool {
    // PostgreSQL SQLSTATE: class 08 connection exception, 53 insufficient resources (too many
    // connections, disk full), 57P01..57P03 shutdown / cannot connect now.
    if code.len() == 5 {
        return code.starts_with("08") || code.starts_with("53") || code.starts_with("57P");
    }
    // SQLite (extended) result codes: the primary code is the low byte. BUSY, LOCKED, IOERR,
    // CANTOPEN.
    match code.parse::<i32>() {
        Ok(extended) => matches!(extended & 0xff, 5 | 6 | 10 | 14),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_unavailable_code;

    #[test]
    fn classifies_backend_codes() {
        assert!(is_unavailable_code("08006"));
        assert!(is_unavailable_code("57P01"));
        assert!(is_unavailable_code("53300"));
        assert!(!is_unavailable_code("23505"));
        assert!(!is_unavailable_code("42P01"));
        assert!(is_unavailable_code("5"));
        assert!(is_unavailable_code("517"));
        assert!(!is_unavailable_code("2067"));
        assert!(!is_unavailable_code("1555"));
    }
}
