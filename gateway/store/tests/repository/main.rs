//! The Repository contract, run on SQLite and on PostgreSQL. Each test is written once as an
//! `async fn(Arc<SeaRepository>)` and listed in `on_both_backends!`, which makes a
//! `sqlite::NAME` and a `postgres::NAME` test of it, each on a fresh database.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` or `$SNAPGATE_TEST_PG_URL`; the
//! tests fail when it is not running.

/// Makes one test per backend for each listed `async fn(Arc<SeaRepository>)` of the module.
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::support::run(snapgate_store::testing::TestBackend::Sqlite, super::$test).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::support::run(snapgate_store::testing::TestBackend::Postgres, super::$test).await;
                }
            )+
        }
    };
}

mod concurrency;
mod connection;
mod decisions;
mod events;
mod idempotency;
mod leases;
mod listing;
mod operations;
mod placements;
mod progress;
mod schedules;
mod states;
mod support;
mod tenants;
mod webhooks;
