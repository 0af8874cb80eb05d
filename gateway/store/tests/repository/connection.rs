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

/// The value of a SQLite pragma on one of the pool's connections.
async fn pragma<T: sea_orm::TryGetable>(repo: &SeaRepository, name: &str) -> T {
    let db = repo.connection();
    db.query_one(Statement::from_string(
        db.get_database_backend(),
        format!("PRAGMA {name}"),
    ))
    .await
    .unwrap()
    .unwrap_or_else(|| panic!("PRAGMA {name} returned no row"))
    .try_get_by_index::<T>(0)
    .unwrap()
}

#[tokio::test]
async fn sqlite_creates_its_directory_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a").join("b");
    let repo = SeaRepository::connect(&sqlite_url(&nested)).await.unwrap();
    assert_eq!(repo.backend(), Backend::Sqlite);
    repo.migrate().await.unwrap();
    assert!(nested.join("snapgate.db").exists());
    let mode: String = pragma(&repo, "journal_mode").await;
    assert_eq!(mode, "wal");
    let foreign_keys: i32 = pragma(&repo, "foreign_keys").await;
    assert_eq!(foreign_keys, 1);
    repo.close().await;
}

/// Commits only append to the WAL; a background task copies it into the database file soon
/// after writes, so no commit pays for a checkpoint. SQLite's own automatic checkpoint stays
/// as a backstop above what these saves write (~2,000 of its 4,096 pages): without the task,
/// the database file would not grow at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let repo = SeaRepository::connect(&sqlite_url(dir.path()))
        .await
        .unwrap();
    repo.migrate().await.unwrap();
    let backstop: i64 = pragma(&repo, "wal_autocheckpoint").await;
    assert_eq!(
        backstop, 4_096,
        "pages a commit may leave before checkpointing itself"
    );

    let file = dir.path().join("snapgate.db");
    let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    // Let the migrations' own writes settle first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = size();
    for i in 0..100 {
        crate::support::available(&repo, uuid::Uuid::new_v4(), &format!("state {i}")).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while size() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {before} bytes: no background checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
