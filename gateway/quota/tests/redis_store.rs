//! `RedisQuotaStore` against the shared scenarios, on the real Redis at 127.0.0.1:6379.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{scenarios, RedisFixture, LONG_LEASE};
use snapgate_core::ports::{QuotaError, QuotaStore, TenantTotals};
use snapgate_quota::{tenant_key_part, RedisQuotaConfig, RedisQuotaStore};

#[tokio::test]
async fn reserve_commit_release_free() {
    let fx = RedisFixture::new().await;
    scenarios::reserve_commit_release_free(fx.store.as_ref()).await;
}

#[tokio::test]
async fn retries_are_idempotent() {
    let fx = RedisFixture::new().await;
    scenarios::retries_are_idempotent(fx.store.as_ref()).await;
}

#[tokio::test]
async fn each_limit_reports_its_numbers() {
    let fx = RedisFixture::new().await;
    scenarios::each_limit_reports_its_numbers(fx.store.as_ref()).await;
}

#[tokio::test]
async fn minus_one_is_unlimited() {
    let fx = RedisFixture::new().await;
    scenarios::minus_one_is_unlimited(fx.store.as_ref()).await;
}

#[tokio::test]
async fn leases_lapse() {
    let fx = RedisFixture::new().await;
    scenarios::leases_lapse(fx.store.as_ref()).await;
}

#[tokio::test]
async fn save_rate_limits_with_retry_after() {
    let fx = RedisFixture::new().await;
    scenarios::save_rate_limits_with_retry_after(fx.store.as_ref()).await;
}

#[tokio::test]
async fn rebuild_sets_truth_and_primes() {
    let fx = RedisFixture::new().await;
    assert!(!fx.store.is_primed().await.unwrap());
    scenarios::rebuild_sets_truth_and_primes(fx.store.as_ref()).await;
}

#[tokio::test]
async fn a_young_reservation_survives_a_rebuild_that_does_not_show_it() {
    let fx = RedisFixture::new().await;
    let store = common::redis_store_with_default_grace(&fx.prefix);
    store.connect().await.unwrap();
    scenarios::a_young_reservation_survives_a_rebuild_that_does_not_show_it(&store).await;
}

/// A flushed Redis, rebuilt from the database, keeps the hour's saves.
#[tokio::test]
async fn rebuild_after_a_flush_restores_the_hourly_window() {
    let fx = RedisFixture::new().await;
    fx.flush();
    scenarios::rebuild_restores_the_hourly_window(fx.store.as_ref()).await;
}

#[tokio::test]
async fn a_flushed_redis_is_detected_and_rebuilt() {
    let fx = RedisFixture::new().await;
    let t = common::tenant();
    let lim = common::limits(5, -1, -1, -1);
    let running = common::save(&t, 10);
    fx.store.reserve(&running, &lim, LONG_LEASE).await.unwrap();
    let totals = [TenantTotals {
        tenant: t.clone(),
        states: 4,
        bytes: 400,
    }];
    fx.store
        .rebuild(&totals, &[], std::slice::from_ref(&running), LONG_LEASE)
        .await
        .unwrap();
    assert!(fx.store.is_primed().await.unwrap());

    fx.flush();
    assert!(
        !fx.store.is_primed().await.unwrap(),
        "a flushed Redis must report it needs a rebuild"
    );
    // Until rebuilt it is blind: the 5th state would pass.
    assert_eq!(fx.store.usage(&t, &lim).await.unwrap().states.in_use, 0);

    fx.store
        .rebuild(&totals, &[], std::slice::from_ref(&running), LONG_LEASE)
        .await
        .unwrap();
    assert!(fx.store.is_primed().await.unwrap());
    let u = fx.store.usage(&t, &lim).await.unwrap();
    assert_eq!(
        (u.states.in_use, u.states.reserved, u.state_bytes.in_use),
        (4, 1, 400)
    );
    assert!(fx
        .store
        .reserve(&common::save(&t, 1), &lim, LONG_LEASE)
        .await
        .is_err());
}

#[tokio::test]
async fn every_key_of_a_tenant_shares_its_hash_tag() {
    let fx = RedisFixture::new().await;
    let awkward = "we}ird:{tenant%id";
    let lim = common::limits(-1, -1, -1, -1);
    let r = common::save(awkward, 1);
    fx.store.reserve(&r, &lim, LONG_LEASE).await.unwrap();
    fx.store.commit(awkward, r.operation, None).await.unwrap();
    fx.store
        .free(awkward, uuid::Uuid::new_v4(), 1, 1)
        .await
        .unwrap();
    fx.store.rebuild(&[], &[], &[], LONG_LEASE).await.unwrap();

    let tag = format!("{{{}}}", tenant_key_part(awkward));
    let mut tenant_keys = 0;
    for key in fx.keys() {
        let rest = &key[fx.prefix.len() + 1..];
        if rest == "tenants" || rest == "primed" {
            continue;
        }
        // Redis hashes the text between the first '{' and the next '}'.
        let open = key.find('{').unwrap();
        let close = open + key[open..].find('}').unwrap();
        assert_eq!(&key[open..=close], tag, "key {key}");
        tenant_keys += 1;
    }
    assert!(tenant_keys >= 4, "expected inuse, saves, op and freed keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_200_reserves_limit_10() {
    let fx = RedisFixture::new().await;
    let store: Arc<dyn QuotaStore> = fx.store.clone();
    scenarios::race_exactly_limit(&[store]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_between_two_gateways_limit_10() {
    let fx = RedisFixture::new().await;
    let first: Arc<dyn QuotaStore> = fx.store.clone();
    let second: Arc<dyn QuotaStore> = fx.second_gateway().await;
    scenarios::race_exactly_limit(&[first, second]).await;
}

#[tokio::test]
async fn dead_redis_is_unavailable_quickly() {
    // Nothing listens on port 1: every call must fail fast, never hang.
    let store =
        RedisQuotaStore::new(RedisQuotaConfig::new("redis://127.0.0.1:1", "sgtest-dead")).unwrap();
    let lim = common::limits(-1, -1, -1, -1);
    let t = common::tenant();
    for _ in 0..3 {
        let (result, took) =
            scenarios::elapsed(store.reserve(&common::save(&t, 1), &lim, LONG_LEASE)).await;
        assert!(
            matches!(result, Err(QuotaError::Unavailable(_))),
            "{result:?}"
        );
        assert!(took < Duration::from_millis(1500), "took {took:?}");
    }
    let (primed, took) = scenarios::elapsed(store.is_primed()).await;
    assert!(matches!(primed, Err(QuotaError::Unavailable(_))));
    assert!(took < Duration::from_millis(1500));
}

#[tokio::test]
async fn bad_configuration_is_refused() {
    assert!(RedisQuotaStore::new(RedisQuotaConfig::new(common::REDIS_URL, "pre{fix")).is_err());
    assert!(RedisQuotaStore::new(RedisQuotaConfig::new(common::REDIS_URL, "")).is_err());
    assert!(RedisQuotaStore::new(RedisQuotaConfig::new("not a url", "p")).is_err());
}

#[tokio::test]
async fn check_answers_like_reserve_and_changes_nothing() {
    let fx = RedisFixture::new().await;
    scenarios::check_answers_like_reserve_and_changes_nothing(fx.store.as_ref()).await;
}

/// The check script runs read-only (Redis's `no-writes` flag): a lapsed lease it skips is
/// still in Redis afterwards, where a reserve would have dropped it.
#[tokio::test]
async fn check_writes_nothing_even_over_lapsed_leases() {
    let fx = RedisFixture::new().await;
    let t = common::tenant();
    let lim = common::limits(1, -1, -1, -1);
    fx.store
        .reserve(&common::save(&t, 10), &lim, Duration::from_millis(1))
        .await
        .unwrap();
    let resv = format!("{}:{{{}}}:resv", fx.prefix, tenant_key_part(&t));
    let saves = format!("{}:{{{}}}:saves", fx.prefix, tenant_key_part(&t));
    let raw = || {
        let mut con = redis::Client::open(common::REDIS_URL)
            .unwrap()
            .get_connection()
            .unwrap();
        let leases: Vec<String> = redis::cmd("HKEYS").arg(&resv).query(&mut con).unwrap();
        let window: Vec<String> = redis::cmd("ZRANGE")
            .arg(&saves)
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .unwrap();
        (leases, window)
    };
    let held = raw();
    assert_eq!((held.0.len(), held.1.len()), (1, 1), "{held:?}");
    // The lease lapses on Redis's clock; the check answers "fits" once it has.
    while fx.store.check(&common::save(&t, 10), &lim).await.is_err() {
        tokio::task::yield_now().await;
    }
    assert_eq!(raw(), held, "check changed Redis");
    fx.store
        .reserve(&common::save(&t, 10), &lim, LONG_LEASE)
        .await
        .unwrap();
    assert_ne!(raw().0, held.0, "reserve drops the lapsed lease");
}

/// A lease written before leases carried their creation time (five fields, no `created`) has
/// no age to judge: a rebuild treats it as old, so an upgrade does not keep such leases a
/// grace longer, and drops it when the database does not show its operation.
#[tokio::test]
async fn a_lease_without_a_creation_time_counts_as_old_in_a_rebuild() {
    let fx = RedisFixture::new().await;
    let store = common::redis_store_with_default_grace(&fx.prefix);
    store.connect().await.unwrap();
    let t = common::tenant();
    let lim = common::limits(1, -1, -1, -1);
    let r = common::save(&t, 10);
    store.reserve(&r, &lim, LONG_LEASE).await.unwrap();
    let resv = format!("{}:{{{}}}:resv", fx.prefix, tenant_key_part(&t));
    let mut con = redis::Client::open(common::REDIS_URL)
        .unwrap()
        .get_connection()
        .unwrap();
    let field = r.operation.to_string();
    let lease: String = redis::cmd("HGET")
        .arg(&resv)
        .arg(&field)
        .query(&mut con)
        .unwrap();
    let fields: Vec<&str> = lease.split(':').collect();
    assert_eq!(
        fields.len(),
        6,
        "a new lease carries its creation time: {lease}"
    );
    let legacy = fields[..5].join(":");
    let _: () = redis::cmd("HSET")
        .arg(&resv)
        .arg(&field)
        .arg(&legacy)
        .query(&mut con)
        .unwrap();
    assert_eq!(store.usage(&t, &lim).await.unwrap().states.reserved, 1);
    store.rebuild(&[], &[], &[], LONG_LEASE).await.unwrap();
    assert_eq!(
        store.usage(&t, &lim).await.unwrap().states.reserved,
        0,
        "the legacy lease was kept"
    );
}
