//! Opening databases, migrating them, and reporting a database that cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use snapgate_core::ports::{RepoError, Repository};
use snapgate_store::testing::{sqlite_url, TestDatabase};
use snapgate_store::{Backend, SeaRepository, StoreOptions};

on_both_backends!(ping_and_migrate_again);

async fn ping_and_migrate_again(repo: Arc<SeaRepository>) {
    repo.ping().await.unwrap();
    // Migrating an up-to-date database changes nothing.
    repo.migrate().await.unwrap();
    repo.migrate().await.unwrap();
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    let url = format!("postgres://postgres@127.0.0.1:{}/snapgate", closed_port());
    let options = StoreOptions {
        lazy: true,
        acquire_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let repo = SeaRepository::connect_with(&url, &options)
        .await
        .expect("a lazy pool opens no connection");
    let err = repo.ping().await.unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    let err = repo.get_state(uuid::Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");

    let eager = StoreOptions {
        lazy: false,
        ..options
    };
    let err = SeaRepository::connect_with(&url, &eager).await.unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn unknown_url_scheme_is_refused() {
    let err = SeaRepository::connect("mysql://localhost/db")
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Other(_)), "{err:?}");
}

#[tokio::test]
async fn sqlite_creates_its_directory_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a").join("b");
    let repo = SeaRepository::connect(&sqlite_url(&nested)).await.unwrap();
    assert_eq!(repo.backend(), Backend::Sqlite);
    repo.migrate().await.unwrap();
    assert!(nested.join("snapgate.db").exists());
    let db = repo.connection();
    let mode = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "PRAGMA journal_mode",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap();
    assert_eq!(mode, "wal");
    let foreign_keys = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "PRAGMA foreign_keys",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i32>(0)
        .unwrap();
    assert_eq!(foreign_keys, 1);
    repo.close().await;
}

/// Several gateway replicas starting together migrate one PostgreSQL database safely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_postgres_migrations_do_not_collide() {
    let database = TestDatabase::create()
        .await
        .expect("PostgreSQL test database");
    let mut replicas = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = database.url().to_owned();
        replicas.spawn(async move {
            let repo = SeaRepository::connect(&url).await?;
            let migrated = repo.migrate().await;
            repo.close().await;
            migrated
        });
    }
    while let Some(result) = replicas.join_next().await {
        result.expect("task").expect("migrate");
    }
    database.cleanup().await.unwrap();
}

/// The database disappears under a running repository: queries report `Unavailable` (503),
/// not an internal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_postgres_database_is_unavailable() {
    let database = TestDatabase::create()
        .await
        .expect("PostgreSQL test database");
    let repo = SeaRepository::connect(database.url()).await.unwrap();
    repo.migrate().await.unwrap();
    repo.ping().await.unwrap();
    database.cleanup().await.unwrap();

    let err = repo.ping().await.unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    let err = repo.count_states(uuid::Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
}
