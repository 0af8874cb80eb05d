//! A tenant whose Redis data is not trusted on the Redis process that serves it (a replica
//! promoted after its master died, a restarted node) is rebuilt from the database's truth before
//! any decision: its hourly save window included, and for the read-only dry-run check too.
//! On the real Redis at 127.0.0.1:6379; "another Redis process" is simulated by giving the
//! tenant's `owner` key another run id and dropping what the promoted replica would lack.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::{RedisFixture, LONG_LEASE};
use snapgate_core::ports::{
    QuotaError, QuotaStore, QuotaTruth, RecentSave, RepoError, TenantTotals, TenantTruth,
};
use snapgate_quota::tenant_key_part;
use uuid::Uuid;

/// The database's truth of one tenant, as the test sets it.
#[derive(Default)]
struct FixedTruth {
    truth: Mutex<Option<TenantTruth>>,
}

impl FixedTruth {
    fn set(&self, truth: TenantTruth) {
        *self.truth.lock().unwrap() = Some(truth);
    }
}

#[async_trait]
impl QuotaTruth for FixedTruth {
    async fn tenant_truth(&self, tenant: &str) -> Result<TenantTruth, RepoError> {
        let truth = self.truth.lock().unwrap().clone();
        Ok(truth
            .filter(|t| t.totals.as_ref().is_none_or(|tt| tt.tenant == tenant))
            .unwrap_or(TenantTruth {
                totals: None,
                live: Vec::new(),
                saves: Vec::new(),
            }))
    }
}

fn fixture_truth(fx: &RedisFixture) -> Arc<FixedTruth> {
    let truth = Arc::new(FixedTruth::default());
    fx.store.set_truth(truth.clone(), LONG_LEASE);
    truth
}

/// What a promoted replica that missed the tenant's last writes looks like: the tenant's keys
/// are gone (or old) and its `owner` names another Redis process.
fn fail_over(fx: &RedisFixture, tenant: &str) {
    let tag = format!("{}:{{{}}}", fx.prefix, tenant_key_part(tenant));
    let mut con = redis::Client::open(common::REDIS_URL)
        .unwrap()
        .get_connection()
        .unwrap();
    for key in ["inuse", "resv", "saves"] {
        let _: i64 = redis::cmd("DEL")
            .arg(format!("{tag}:{key}"))
            .query(&mut con)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg(format!("{tag}:owner"))
        .arg("0000000000000000000000000000000000000000")
        .query(&mut con)
        .unwrap();
}

fn minutes_ago(tenant: &str, minutes: i64) -> RecentSave {
    RecentSave {
        tenant: tenant.into(),
        operation: Uuid::now_v7(),
        at: chrono::Utc::now() - chrono::Duration::minutes(minutes),
    }
}

/// The saves of the hour the promoted replica lacks come back from the database: the tenant at
/// its hourly limit stays at it (without them it could save the limit again).
#[tokio::test]
async fn a_stale_tenant_is_rebuilt_with_its_hourly_window() {
    let fx = RedisFixture::new().await;
    let truth = fixture_truth(&fx);
    let t = common::tenant();
    let lim = common::limits(-1, -1, -1, 2);
    for _ in 0..2 {
        let r = common::save(&t, 1);
        fx.store.reserve(&r, &lim, LONG_LEASE).await.unwrap();
        fx.store.commit(&t, r.operation, None).await.unwrap();
    }
    truth.set(TenantTruth {
        totals: Some(TenantTotals {
            tenant: t.clone(),
            states: 2,
            bytes: 2,
        }),
        live: Vec::new(),
        // 50 and 10 minutes ago, and one out of the hour.
        saves: vec![
            minutes_ago(&t, 50),
            minutes_ago(&t, 10),
            minutes_ago(&t, 61),
        ],
    });

    fail_over(&fx, &t);
    let u = fx.store.usage(&t, &lim).await.unwrap();
    assert_eq!((u.states.in_use, u.saves_per_hour.in_use), (2, 2), "{u:?}");
    match fx
        .store
        .reserve(&common::save(&t, 1), &lim, LONG_LEASE)
        .await
    {
        Err(QuotaError::RateLimited { retry_after_secs }) => assert!(
            (9 * 60..=10 * 60 + 1).contains(&retry_after_secs),
            "retry after {retry_after_secs} s"
        ),
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

/// The dry-run check cannot write, so it cannot rebuild a stale tenant itself: it answers
/// STALE and the store rebuilds, then asks again. Its answer is then the database's (the
/// promoted replica's empty data would say "fits").
#[tokio::test]
async fn check_on_a_stale_tenant_answers_from_the_rebuilt_truth() {
    let fx = RedisFixture::new().await;
    let truth = fixture_truth(&fx);
    let t = common::tenant();
    let lim = common::limits(3, -1, -1, 1);
    // Fresh on this Redis process first.
    fx.store.usage(&t, &lim).await.unwrap();
    truth.set(TenantTruth {
        totals: Some(TenantTotals {
            tenant: t.clone(),
            states: 3,
            bytes: 30,
        }),
        live: Vec::new(),
        saves: vec![minutes_ago(&t, 5)],
    });
    fail_over(&fx, &t);

    match fx.store.check(&common::save(&t, 1), &lim).await {
        Err(QuotaError::Exceeded {
            in_use, requested, ..
        }) => assert_eq!((in_use, requested), (3, 1)),
        other => panic!("expected the states limit, got {other:?}"),
    }
    // A restore asks for no state and no save: it fits...
    fx.store.check(&common::slot_only(&t), &lim).await.unwrap();
    // ...and a save within the states limit still meets the rebuilt hourly window.
    let roomy = common::limits(-1, -1, -1, 1);
    assert!(
        matches!(
            fx.store.check(&common::save(&t, 1), &roomy).await,
            Err(QuotaError::RateLimited { .. })
        ),
        "the hour's save came back with the rebuild"
    );
}

/// States moved to a tenant (an ownership change) are recorded by the database first. Added
/// to a fresh tenant they count once; a stale tenant gets nothing added but is rebuilt from
/// the database, which holds them already: once again, not twice.
#[tokio::test]
async fn states_added_to_a_stale_tenant_count_once() {
    let fx = RedisFixture::new().await;
    let truth = fixture_truth(&fx);
    let lim = common::limits(-1, -1, -1, -1);
    let moved = |t: &str| TenantTruth {
        totals: Some(TenantTotals {
            tenant: t.into(),
            states: 2,
            bytes: 20,
        }),
        live: Vec::new(),
        saves: Vec::new(),
    };

    // Fresh: the addition is the count, and a retry changes nothing.
    let fresh = common::tenant();
    fx.store.usage(&fresh, &lim).await.unwrap();
    truth.set(moved(&fresh));
    let id = Uuid::now_v7();
    for _ in 0..2 {
        fx.store
            .add_in_use(&fresh, id, 2, 20, LONG_LEASE)
            .await
            .unwrap();
    }
    let u = fx.store.usage(&fresh, &lim).await.unwrap();
    assert_eq!((u.states.in_use, u.state_bytes.in_use), (2, 20), "{u:?}");

    // Stale (never rebuilt on this Redis process): the rebuild counts the move.
    let stale = common::tenant();
    truth.set(moved(&stale));
    fx.store
        .add_in_use(&stale, Uuid::now_v7(), 2, 20, LONG_LEASE)
        .await
        .unwrap();
    let u = fx.store.usage(&stale, &lim).await.unwrap();
    assert_eq!((u.states.in_use, u.state_bytes.in_use), (2, 20), "{u:?}");
}
