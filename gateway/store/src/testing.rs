//! Throwaway databases for tests (this crate's and the gateway's integration suite): a fresh
//! PostgreSQL database per test, or a SQLite file in a temporary directory. Tests fail, never
//! skip, when PostgreSQL is not there.

use std::path::Path;

use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::{Connection, Executor};
use snapgate_core::ports::RepoError;

use crate::errors::sqlx_error;
use crate::SeaRepository;

/// Overrides the PostgreSQL server used by tests (a URL of a database we may connect to and
/// create databases from).
pub const PG_URL_ENV: &str = "SNAPGATE_TEST_PG_URL";
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The URL of a SQLite database file inside `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("snapgate.db").display())
}

/// A PostgreSQL database `snapgate_test_<random>`, dropped (`WITH (FORCE)`, so open pools do
/// not stop it) by [`TestDatabase::cleanup`] or, failing that, on drop.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl TestDatabase {
    pub async fn create() -> Result<Self, RepoError> {
        let admin_url = std::env::var(PG_URL_ENV).unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let name = format!(
            "snapgate_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .map_err(sqlx_error)?;
        admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .map_err(sqlx_error)?;
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name)?;
        Ok(Self {
            admin_url,
            name,
            url,
            dropped: false,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn cleanup(mut self) -> Result<(), RepoError> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop cannot await, and may run inside a runtime: use a thread with its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => rt.block_on(drop_database(&admin_url, &name)),
                Err(e) => Err(RepoError::Other(e.to_string())),
            }
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            tracing::warn!(database = %self.name, "could not drop the test database");
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), RepoError> {
    let mut admin = PgConnection::connect(admin_url).await.map_err(sqlx_error)?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await
        .map_err(sqlx_error)?;
    let _ = admin.close().await;
    Ok(())
}

/// `admin_url` with its database path replaced by `database` (user, host and query kept).
fn with_database(admin_url: &str, database: &str) -> Result<String, RepoError> {
    let bad = || RepoError::Other(format!("not a PostgreSQL URL: {admin_url}"));
    let scheme_end = admin_url.find("://").ok_or_else(bad)? + 3;
    let rest = &admin_url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[authority_end..]
        .find('?')
        .map(|q| &rest[authority_end + q..])
        .unwrap_or("");
    Ok(format!(
        "{}{}/{database}{query}",
        &admin_url[..scheme_end],
        &rest[..authority_end]
    ))
}

/// Which engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// A migrated, empty database on either backend, removed when dropped or cleaned up.
#[derive(Debug)]
pub struct TestStore {
    pub url: String,
    holder: Holder,
}

#[derive(Debug)]
enum Holder {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

impl TestStore {
    pub async fn new(backend: TestBackend) -> Result<Self, RepoError> {
        let holder = match backend {
            TestBackend::Sqlite => Holder::Sqlite(
                tempfile::tempdir()
                    .map_err(|e| RepoError::Other(format!("temporary directory: {e}")))?,
            ),
            TestBackend::Postgres => Holder::Postgres(TestDatabase::create().await?),
        };
        let url = match &holder {
            Holder::Sqlite(dir) => sqlite_url(dir.path()),
            Holder::Postgres(db) => db.url().to_owned(),
        };
        Ok(Self { url, holder })
    }

    /// A repository on this database, migrated.
    pub async fn repository(&self) -> Result<SeaRepository, RepoError> {
        let repo = SeaRepository::connect(&self.url).await?;
        repo.migrate().await?;
        Ok(repo)
    }

    pub async fn cleanup(self) -> Result<(), RepoError> {
        match self.holder {
            Holder::Sqlite(dir) => dir
                .close()
                .map_err(|e| RepoError::Other(format!("temporary directory: {e}"))),
            Holder::Postgres(db) => db.cleanup().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_of_a_url() {
        let url = |u| with_database(u, "t1").ok();
        assert_eq!(
            url("postgres://postgres@127.0.0.1:5432/postgres").as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/t1")
        );
        assert_eq!(
            url("postgres://u:p@h/db?sslmode=disable").as_deref(),
            Some("postgres://u:p@h/t1?sslmode=disable")
        );
        assert_eq!(
            url("postgres://h:5432").as_deref(),
            Some("postgres://h:5432/t1")
        );
        assert_eq!(
            url("postgres://h?x=1").as_deref(),
            Some("postgres://h/t1?x=1")
        );
        assert_eq!(url("nothing"), None);
    }
}
