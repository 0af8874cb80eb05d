//! Opening the database: SQLite for one node, PostgreSQL for production. Pools are built with
//! sqlx directly so SQLite gets its pragmas (WAL, busy timeout, foreign keys) on every
//! connection, then handed to sea-orm.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::Connection;
use sea_orm::{DatabaseConnection, SqlxPostgresConnector, SqlxSqliteConnector};
use snapgate_core::ports::RepoError;

use crate::errors::sqlx_error;

/// A PostgreSQL connection idle at least this long is pinged before it is used.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// How the pool behaves. `Default` suits the gateway.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size; `None` picks 10 for PostgreSQL and 4 for SQLite (which has one writer anyway).
    pub max_connections: Option<u32>,
    /// How long a query waits for a connection before the database counts as unavailable.
    pub acquire_timeout: Duration,
    /// Open no connection until the first query (PostgreSQL only): lets the gateway start,
    /// and report 503, while the database is down.
    pub lazy: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: Duration::from_secs(5),
            lazy: false,
        }
    }
}

/// Which engine a URL names; SQLite needs its writes serialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Self, RepoError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(RepoError::Other(
                "unsupported database URL: use sqlite://PATH?mode=rwc or postgres://…".into(),
            ))
        }
    }
}

pub(crate) async fn open(
    url: &str,
    options: &StoreOptions,
) -> Result<DatabaseConnection, RepoError> {
    match Backend::of_url(url)? {
        Backend::Sqlite => open_sqlite(url, options).await,
        Backend::Postgres => open_postgres(url, options).await,
    }
}

async fn open_sqlite(url: &str, options: &StoreOptions) -> Result<DatabaseConnection, RepoError> {
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let connect = SqliteConnectOptions::from_str(url)
        .map_err(sqlx_error)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // One writer at a time: a second one waits instead of failing with SQLITE_BUSY.
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
        // Safe with WAL (a power loss may lose the last commits, never corrupt the file).
        .synchronous(SqliteSynchronous::Normal)
        // Checkpoints run in the background (`checkpoint.rs`); this is only the backstop.
        .pragma(
            "wal_autocheckpoint",
            crate::checkpoint::AUTOCHECKPOINT_BACKSTOP_PAGES.to_string(),
        );
    if !in_memory {
        create_parent_dir(connect.get_filename())?;
    }
    let mut pool = SqlitePoolOptions::new()
        .max_connections(options.max_connections.unwrap_or(4))
        .acquire_timeout(options.acquire_timeout)
        // sqlx pings every connection it takes from the pool, by default: on SQLite a round
        // trip to the connection's worker thread before every statement. A connection to a
        // local file cannot have been cut; sqlx still checks it when it goes back.
        .test_before_acquire(false);
    if in_memory {
        // An in-memory database lives as long as one connection to it.
        pool = pool
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    }
    let pool = pool.connect_with(connect).await.map_err(sqlx_error)?;
    Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

fn create_parent_dir(file: &Path) -> Result<(), RepoError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| {
            RepoError::Unavailable(format!(
                "cannot create the directory {}: {e}",
                dir.display()
            ))
        }),
        _ => Ok(()),
    }
}

async fn open_postgres(url: &str, options: &StoreOptions) -> Result<DatabaseConnection, RepoError> {
    let connect = PgConnectOptions::from_str(url)
        .map_err(sqlx_error)?
        .application_name("snapgate");
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections.unwrap_or(10))
        .acquire_timeout(options.acquire_timeout)
        // sqlx pings every connection it takes from the pool, by default: a round trip to
        // the server before every statement. Only a connection that sat idle may have been
        // cut meanwhile (a restarted server, a proxy's idle timeout): ping those. One in
        // steady use goes straight to its statement; should it have died, that statement
        // fails as unavailable (503) and sqlx drops the connection.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    conn.ping().await?;
                }
                Ok(true)
            })
        });
    let pool = if options.lazy {
        pool.connect_lazy_with(connect)
    } else {
        pool.connect_with(connect).await.map_err(sqlx_error)?
    };
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}
