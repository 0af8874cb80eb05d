//! Property-style check of the Lua scripts: random sequences of decisions go to the Redis store
//! and to `QuotaBook` (the plain-Rust model the in-process store uses); every answer and every
//! usage must agree. Seeds are fixed so a failure replays.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{RedisFixture, LONG_LEASE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use snapgate_core::ports::{QuotaError, QuotaLimits, QuotaReservation, RecentSave, TenantTotals};
use snapgate_quota::{QuotaBook, DEFAULT_MARKER_TTL};
use uuid::Uuid;

const TENANTS: [&str; 3] = ["alpha", "we}ird:{one%", "gamma"];
const LIMITS: QuotaLimits = QuotaLimits {
    states: 4,
    state_bytes: 1000,
    concurrent_operations: 3,
    saves_per_hour: 5,
};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Same variant; same numbers, except retry_after which may differ by the clocks' skew.
fn same_reserve<T: PartialEq + std::fmt::Debug>(
    step: usize,
    redis: &Result<T, QuotaError>,
    model: &Result<T, QuotaError>,
) {
    let agree = match (redis, model) {
        (Ok(a), Ok(b)) => a == b,
        (
            Err(QuotaError::Exceeded {
                resource: r1,
                limit: l1,
                in_use: i1,
                reserved: v1,
                requested: q1,
            }),
            Err(QuotaError::Exceeded {
                resource: r2,
                limit: l2,
                in_use: i2,
                reserved: v2,
                requested: q2,
            }),
        ) => (r1, l1, i1, v1, q1) == (r2, l2, i2, v2, q2),
        (
            Err(QuotaError::RateLimited {
                retry_after_secs: a,
            }),
            Err(QuotaError::RateLimited {
                retry_after_secs: b,
            }),
        ) => a.abs_diff(*b) <= 2,
        _ => false,
    };
    assert!(agree, "step {step}: redis {redis:?} vs model {model:?}");
}

async fn run_seed(seed: u64) {
    let fx = RedisFixture::new().await;
    let redis = &fx.store;
    // Grace zero, as the Redis fixture's: rebuilds drop what the database does not show.
    let mut model =
        QuotaBook::new(DEFAULT_MARKER_TTL.as_millis() as i64).with_reservation_grace_ms(0);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ops: Vec<QuotaReservation> = Vec::new();
    // [reserved, exceeded, rate limited]: the run must reach every kind of answer.
    let mut seen = [0_u32; 3];

    for step in 0..300 {
        let tenant = TENANTS[rng.random_range(0..TENANTS.len())];
        // Pick an operation seen before (retries, late calls) or a new one.
        let known = (!ops.is_empty() && rng.random_bool(0.6))
            .then(|| ops[rng.random_range(0..ops.len())].clone());
        match rng.random_range(0..100) {
            0..=39 => {
                let r = known.unwrap_or_else(|| {
                    let saves = [0, 1, 1, 1, 2][rng.random_range(0..5)];
                    let r = QuotaReservation {
                        tenant: tenant.into(),
                        operation: Uuid::new_v4(),
                        states: rng.random_range(0..=1),
                        bytes: rng.random_range(0..400),
                        operations: 1,
                        saves,
                    };
                    ops.push(r.clone());
                    r
                });
                let got = redis.reserve_outcome(&r, &LIMITS, LONG_LEASE).await;
                let want = model.reserve(&r, &LIMITS, LONG_LEASE.as_millis() as i64, now_ms());
                same_reserve(step, &got, &want);
                match got {
                    Ok(_) => seen[0] += 1,
                    Err(QuotaError::Exceeded { .. }) => seen[1] += 1,
                    Err(_) => seen[2] += 1,
                }
            }
            40..=59 => {
                let Some(r) = known else { continue };
                let actual = rng.random_bool(0.5).then(|| rng.random_range(0..500));
                let got = redis
                    .commit_outcome(&r.tenant, r.operation, actual)
                    .await
                    .unwrap();
                assert_eq!(
                    got,
                    model.commit(&r.tenant, r.operation, actual, now_ms()),
                    "step {step}: commit"
                );
            }
            60..=74 => {
                let Some(r) = known else { continue };
                let got = redis.release_outcome(&r.tenant, r.operation).await.unwrap();
                assert_eq!(
                    got,
                    model.release(&r.tenant, r.operation, now_ms()),
                    "step {step}: release"
                );
            }
            75..=84 => {
                let op = known.map_or_else(Uuid::new_v4, |r| r.operation);
                let (states, bytes) = (rng.random_range(0..=1), rng.random_range(0..300));
                let got = redis.free_outcome(tenant, op, states, bytes).await.unwrap();
                assert_eq!(
                    got,
                    model.free(tenant, op, states, bytes, now_ms()),
                    "step {step}: free"
                );
            }
            85..=89 => {
                let Some(r) = known else { continue };
                let got = redis
                    .renew_outcome(&r.tenant, r.operation, LONG_LEASE)
                    .await
                    .unwrap();
                let want = model.renew(
                    &r.tenant,
                    r.operation,
                    LONG_LEASE.as_millis() as i64,
                    now_ms(),
                );
                assert_eq!(got, want, "step {step}: renew");
            }
            90..=97 => {
                let got = redis.tally(tenant).await.unwrap();
                assert_eq!(
                    got,
                    model.tally(tenant, now_ms()),
                    "step {step}: usage of {tenant}"
                );
            }
            _ => {
                let mut totals = Vec::new();
                for t in TENANTS {
                    if rng.random_bool(0.5) {
                        let (states, bytes) = (rng.random_range(0..4), rng.random_range(0..900));
                        totals.push(TenantTotals {
                            tenant: t.into(),
                            states,
                            bytes,
                        });
                    }
                }
                let live: Vec<QuotaReservation> = ops
                    .iter()
                    .filter(|_| rng.random_bool(0.3))
                    .cloned()
                    .collect();
                // Succeeded saves the database would list: some of the operations (committed,
                // leased or unknown here), well inside the hour or well outside it.
                let mut saves = Vec::new();
                for r in &ops {
                    if !rng.random_bool(0.3) {
                        continue;
                    }
                    let minutes_ago = if rng.random_bool(0.8) {
                        rng.random_range(1..50)
                    } else {
                        rng.random_range(70..120)
                    };
                    saves.push(RecentSave {
                        tenant: r.tenant.clone(),
                        operation: r.operation,
                        at: chrono::Utc::now() - chrono::Duration::minutes(minutes_ago),
                    });
                }
                let got = redis
                    .rebuild_report(&totals, &saves, &live, LONG_LEASE)
                    .await
                    .unwrap();
                let want = model.rebuild(
                    &totals,
                    &saves,
                    &live,
                    LONG_LEASE.as_millis() as i64,
                    now_ms(),
                );
                assert_eq!(got, want, "step {step}: rebuild");
            }
        }
    }
    assert!(
        seen.iter().all(|n| *n > 0),
        "seed {seed} did not reach every answer: {seen:?}"
    );
    for tenant in TENANTS {
        assert_eq!(
            redis.tally(tenant).await.unwrap(),
            model.tally(tenant, now_ms()),
            "final usage of {tenant}"
        );
    }
}

#[tokio::test]
async fn lua_scripts_agree_with_the_model_seed_1() {
    run_seed(1).await;
}

#[tokio::test]
async fn lua_scripts_agree_with_the_model_seed_2() {
    run_seed(2).await;
}

#[tokio::test]
async fn lua_scripts_agree_with_the_model_seed_3() {
    run_seed(3).await;
}
