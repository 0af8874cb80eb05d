//! `MemoryQuotaStore` against the shared scenarios.

mod common;

use std::sync::Arc;

use common::scenarios;
use snapgate_core::ports::{QuotaStore, TenantTotals};
use snapgate_quota::MemoryQuotaStore;

#[tokio::test]
async fn reserve_commit_release_free() {
    scenarios::reserve_commit_release_free(&MemoryQuotaStore::new()).await;
}

#[tokio::test]
async fn retries_are_idempotent() {
    scenarios::retries_are_idempotent(&MemoryQuotaStore::new()).await;
}

#[tokio::test]
async fn each_limit_reports_its_numbers() {
    scenarios::each_limit_reports_its_numbers(&MemoryQuotaStore::new()).await;
}

#[tokio::test]
async fn minus_one_is_unlimited() {
    scenarios::minus_one_is_unlimited(&MemoryQuotaStore::new()).await;
}

#[tokio::test]
async fn leases_lapse() {
    scenarios::leases_lapse(&MemoryQuotaStore::new()).await;
}

#[tokio::test]
async fn save_rate_limits_with_retry_after() {
    scenarios::save_rate_limits_with_retry_after(&MemoryQuotaStore::new()).await;
}

#[tokio::test]
async fn rebuild_sets_truth_and_primes() {
    // Grace zero: the rebuild drops every reservation the database does not show.
    let store = MemoryQuotaStore::new().with_reservation_grace(std::time::Duration::ZERO);
    // Nothing survives a restart: a fresh store must be rebuilt before it is trusted.
    assert!(!store.is_primed().await.unwrap());
    scenarios::rebuild_sets_truth_and_primes(&store).await;
}

/// A graceful restart of a gateway on the in-process store: a fresh store, rebuilt from the
/// database, keeps the hour's saves.
#[tokio::test]
async fn rebuild_after_restart_restores_the_hourly_window() {
    scenarios::rebuild_restores_the_hourly_window(&MemoryQuotaStore::new()).await;
}

#[tokio::test]
async fn a_young_reservation_survives_a_rebuild_that_does_not_show_it() {
    scenarios::a_young_reservation_survives_a_rebuild_that_does_not_show_it(
        &MemoryQuotaStore::new(),
    )
    .await;
}

#[tokio::test]
async fn rebuild_of_empty_store_primes_it() {
    let store = MemoryQuotaStore::new();
    let totals: [TenantTotals; 0] = [];
    store
        .rebuild(&totals, &[], &[], common::LONG_LEASE)
        .await
        .unwrap();
    assert!(store.is_primed().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_200_reserves_limit_10() {
    let store: Arc<dyn QuotaStore> = Arc::new(MemoryQuotaStore::new());
    scenarios::race_exactly_limit(&[store]).await;
}

#[tokio::test]
async fn check_answers_like_reserve_and_changes_nothing() {
    scenarios::check_answers_like_reserve_and_changes_nothing(&MemoryQuotaStore::new()).await;
}
