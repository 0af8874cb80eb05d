//! Behaviour both stores must show, written once against the `QuotaStore` trait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use snapgate_core::ports::{
    QuotaError, QuotaLimits, QuotaResource, QuotaStore, RecentSave, ResourceUsage, TenantTotals,
};
use uuid::Uuid;

use super::{limits, save, slot_only, tenant, LONG_LEASE};

const FREE_FOR_ALL: QuotaLimits = QuotaLimits::UNLIMITED;

fn usage_of(in_use: i64, reserved: i64, limit: i64) -> ResourceUsage {
    ResourceUsage {
        limit,
        in_use,
        reserved,
    }
}

pub async fn reserve_commit_release_free(store: &dyn QuotaStore) {
    let t = tenant();
    let lim = limits(10, 1000, 5, 100);
    let a = save(&t, 100);
    let b = save(&t, 200);
    store.reserve(&a, &lim, LONG_LEASE).await.unwrap();
    store.reserve(&b, &lim, LONG_LEASE).await.unwrap();

    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(u.states, usage_of(0, 2, 10));
    assert_eq!(u.state_bytes, usage_of(0, 300, 1000));
    assert_eq!(u.concurrent_operations, usage_of(0, 2, 5));
    assert_eq!(u.saves_per_hour, usage_of(0, 2, 100));

    // `a` succeeds but its state came out smaller; `b` fails.
    store.commit(&t, a.operation, Some(80)).await.unwrap();
    store.release(&t, b.operation).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(u.states, usage_of(1, 0, 10));
    assert_eq!(u.state_bytes, usage_of(80, 0, 1000));
    assert_eq!(u.concurrent_operations, usage_of(0, 0, 5));
    // The committed save stays in the window; the failed one does not count.
    assert_eq!(u.saves_per_hour, usage_of(1, 0, 100));

    // Commit without a byte correction keeps what was reserved.
    let c = save(&t, 50);
    store.reserve(&c, &lim, LONG_LEASE).await.unwrap();
    store.commit(&t, c.operation, None).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!((u.states.in_use, u.state_bytes.in_use), (2, 130));

    // A delete: reserves a slot, frees the state, releases its slot (as the service does).
    let del = slot_only(&t);
    store.reserve(&del, &lim, LONG_LEASE).await.unwrap();
    store.free(&t, del.operation, 1, 80).await.unwrap();
    store.release(&t, del.operation).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(u.states, usage_of(1, 0, 10));
    assert_eq!(u.state_bytes, usage_of(50, 0, 1000));
    assert_eq!(u.concurrent_operations, usage_of(0, 0, 5));

    // Another tenant is untouched.
    let other = store.usage(&tenant(), &lim).await.unwrap();
    assert_eq!(other.states, usage_of(0, 0, 10));
}

pub async fn retries_are_idempotent(store: &dyn QuotaStore) {
    let t = tenant();
    let lim = limits(10, 1000, 5, 100);
    let a = save(&t, 100);
    for _ in 0..3 {
        store.reserve(&a, &lim, LONG_LEASE).await.unwrap();
    }
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(
        (
            u.states.reserved,
            u.state_bytes.reserved,
            u.saves_per_hour.reserved
        ),
        (1, 100, 1)
    );

    store.commit(&t, a.operation, Some(90)).await.unwrap();
    store.commit(&t, a.operation, Some(90)).await.unwrap();
    store.commit(&t, a.operation, None).await.unwrap();
    // A release arriving after the commit must not undo it, nor a late reserve retry reserve.
    store.release(&t, a.operation).await.unwrap();
    store.reserve(&a, &lim, LONG_LEASE).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(u.states, usage_of(1, 0, 10));
    assert_eq!(u.state_bytes, usage_of(90, 0, 1000));
    assert_eq!(u.saves_per_hour, usage_of(1, 0, 100));

    // Committing or releasing an operation never reserved counts nothing.
    store.commit(&t, Uuid::new_v4(), Some(500)).await.unwrap();
    store.release(&t, Uuid::new_v4()).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!((u.states.in_use, u.state_bytes.in_use), (1, 90));

    // Double release, then a late reserve retry: nothing held.
    let b = save(&t, 10);
    store.reserve(&b, &lim, LONG_LEASE).await.unwrap();
    store.release(&t, b.operation).await.unwrap();
    store.release(&t, b.operation).await.unwrap();
    store.reserve(&b, &lim, LONG_LEASE).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(
        (
            u.states.reserved,
            u.concurrent_operations.reserved,
            u.saves_per_hour.reserved
        ),
        (0, 0, 0)
    );

    // Double free of the same delete operation subtracts once; in-use never goes below zero.
    let del = Uuid::new_v4();
    store.free(&t, del, 1, 90).await.unwrap();
    store.free(&t, del, 1, 90).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!((u.states.in_use, u.state_bytes.in_use), (0, 0));
    store.free(&t, Uuid::new_v4(), 5, 5000).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!((u.states.in_use, u.state_bytes.in_use), (0, 0));
}

fn expect_exceeded(result: Result<(), QuotaError>, want: (QuotaResource, i64, i64, i64, i64)) {
    match result {
        Err(QuotaError::Exceeded {
            resource,
            limit,
            in_use,
            reserved,
            requested,
        }) => {
            assert_eq!((resource, limit, in_use, reserved, requested), want)
        }
        other => panic!("expected Exceeded {want:?}, got {other:?}"),
    }
}

pub async fn each_limit_reports_its_numbers(store: &dyn QuotaStore) {
    // states: 2 in use + 1 reserved, limit 3.
    let t = tenant();
    let lim = limits(3, -1, -1, -1);
    for _ in 0..2 {
        let s = save(&t, 1);
        store.reserve(&s, &lim, LONG_LEASE).await.unwrap();
        store.commit(&t, s.operation, None).await.unwrap();
    }
    store.reserve(&save(&t, 1), &lim, LONG_LEASE).await.unwrap();
    expect_exceeded(
        store.reserve(&save(&t, 1), &lim, LONG_LEASE).await,
        (QuotaResource::States, 3, 2, 1, 1),
    );
    // An operation asking for no new state is not stopped by the states limit.
    store
        .reserve(&slot_only(&t), &lim, LONG_LEASE)
        .await
        .unwrap();

    // state_bytes: 600 in use, 300 reserved, asking 200 of 1000.
    let t = tenant();
    let lim = limits(-1, 1000, -1, -1);
    let s = save(&t, 600);
    store.reserve(&s, &lim, LONG_LEASE).await.unwrap();
    store.commit(&t, s.operation, None).await.unwrap();
    store
        .reserve(&save(&t, 300), &lim, LONG_LEASE)
        .await
        .unwrap();
    expect_exceeded(
        store.reserve(&save(&t, 200), &lim, LONG_LEASE).await,
        (QuotaResource::StateBytes, 1000, 600, 300, 200),
    );
    store
        .reserve(&save(&t, 100), &lim, LONG_LEASE)
        .await
        .unwrap(); // exactly at the limit

    // concurrent_operations: 2 running of 2.
    let t = tenant();
    let lim = limits(-1, -1, 2, -1);
    store
        .reserve(&slot_only(&t), &lim, LONG_LEASE)
        .await
        .unwrap();
    let second = save(&t, 1);
    store.reserve(&second, &lim, LONG_LEASE).await.unwrap();
    expect_exceeded(
        store.reserve(&slot_only(&t), &lim, LONG_LEASE).await,
        (QuotaResource::ConcurrentOperations, 2, 0, 2, 1),
    );
    // Committing frees the slot.
    store.commit(&t, second.operation, None).await.unwrap();
    store
        .reserve(&slot_only(&t), &lim, LONG_LEASE)
        .await
        .unwrap();

    // saves_per_hour: more saves than the limit itself can never pass: Exceeded, not a rate.
    let t = tenant();
    let lim = limits(-1, -1, -1, 0);
    expect_exceeded(
        store.reserve(&save(&t, 1), &lim, LONG_LEASE).await,
        (QuotaResource::SavesPerHour, 0, 0, 0, 1),
    );

    // Every resource fails before anything is reserved: a failed reserve holds nothing.
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(u.concurrent_operations.reserved, 0);
}

pub async fn minus_one_is_unlimited(store: &dyn QuotaStore) {
    let t = tenant();
    for _ in 0..50 {
        let s = save(&t, 1 << 40);
        store.reserve(&s, &FREE_FOR_ALL, LONG_LEASE).await.unwrap();
        store.commit(&t, s.operation, None).await.unwrap();
    }
    for _ in 0..20 {
        store
            .reserve(&save(&t, 1 << 40), &FREE_FOR_ALL, LONG_LEASE)
            .await
            .unwrap();
    }
    let u = store.usage(&t, &FREE_FOR_ALL).await.unwrap();
    assert_eq!(u.states, usage_of(50, 20, -1));
    assert_eq!(u.state_bytes, usage_of(50 << 40, 20 << 40, -1));
    assert_eq!(u.saves_per_hour, usage_of(50, 20, -1));
}

pub async fn leases_lapse(store: &dyn QuotaStore) {
    let t = tenant();
    let lim = limits(1, -1, -1, -1);
    let short = save(&t, 10);
    store
        .reserve(&short, &lim, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(store
        .reserve(&save(&t, 10), &lim, LONG_LEASE)
        .await
        .is_err());

    // Renewing keeps it past its first expiry.
    tokio::time::sleep(Duration::from_millis(200)).await;
    store
        .renew(&t, short.operation, Duration::from_millis(300))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.usage(&t, &lim).await.unwrap().states.reserved, 1);

    // Unrenewed, it lapses: its units are free again, and a lapsed save left the window.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(
        (
            u.states.reserved,
            u.saves_per_hour.in_use,
            u.saves_per_hour.reserved
        ),
        (0, 0, 0)
    );
    let next = save(&t, 10);
    store.reserve(&next, &lim, LONG_LEASE).await.unwrap();
    // A renew of the lapsed lease succeeds without reviving it; a late commit counts nothing.
    store.renew(&t, short.operation, LONG_LEASE).await.unwrap();
    store.commit(&t, short.operation, None).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!((u.states.in_use, u.states.reserved), (0, 1));
}

pub async fn save_rate_limits_with_retry_after(store: &dyn QuotaStore) {
    let t = tenant();
    let lim = limits(-1, -1, -1, 2);
    let first = save(&t, 1);
    store.reserve(&first, &lim, LONG_LEASE).await.unwrap();
    store.commit(&t, first.operation, None).await.unwrap();
    let second = save(&t, 1);
    store.reserve(&second, &lim, LONG_LEASE).await.unwrap();

    match store.reserve(&save(&t, 1), &lim, LONG_LEASE).await {
        Err(QuotaError::RateLimited { retry_after_secs }) => {
            assert!(
                (3595..=3600).contains(&retry_after_secs),
                "retry after {retry_after_secs}"
            )
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // A failed save gives its place back; operations that are not saves are not rate limited.
    store.release(&t, second.operation).await.unwrap();
    store
        .reserve(&slot_only(&t), &lim, LONG_LEASE)
        .await
        .unwrap();
    store.reserve(&save(&t, 1), &lim, LONG_LEASE).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(u.saves_per_hour, usage_of(1, 1, 2));
}

/// A save reserves its units before its accepting write reaches the database, so a rebuild may
/// have read a database that does not show it yet. With the default grace the young
/// reservation survives that rebuild: a second save cannot take its unit (one over the limit),
/// and its commit afterwards counts the state once.
pub async fn a_young_reservation_survives_a_rebuild_that_does_not_show_it(store: &dyn QuotaStore) {
    let t = tenant();
    let lim = limits(1, -1, -1, -1);
    let accepted = save(&t, 10);
    store.reserve(&accepted, &lim, LONG_LEASE).await.unwrap();
    // The database read before the accepting write: no state, no live operation.
    store.rebuild(&[], &[], &[], LONG_LEASE).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(
        u.states,
        usage_of(0, 1, 1),
        "the young reservation was dropped"
    );
    let second = save(&t, 10);
    match store.reserve(&second, &lim, LONG_LEASE).await {
        Err(QuotaError::Exceeded { resource, .. }) => assert_eq!(resource, QuotaResource::States),
        other => panic!("a second save was admitted over the limit: {other:?}"),
    }
    store.commit(&t, accepted.operation, None).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(u.states, usage_of(1, 0, 1));

    // A save the database shows succeeded whose end never reached the store (its gateway died
    // between the two): its young lease is dropped, or the state would count twice.
    let t = tenant();
    let lim = limits(2, -1, -1, -1);
    let orphan = save(&t, 10);
    store.reserve(&orphan, &lim, LONG_LEASE).await.unwrap();
    let totals = [TenantTotals {
        tenant: t.clone(),
        states: 1,
        bytes: 10,
    }];
    let succeeded = [RecentSave {
        tenant: t.clone(),
        operation: orphan.operation,
        at: chrono::Utc::now(),
    }];
    store
        .rebuild(&totals, &succeeded, &[], LONG_LEASE)
        .await
        .unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(u.states, usage_of(1, 0, 2), "the ended save counts once");
}

pub async fn rebuild_sets_truth_and_primes(store: &dyn QuotaStore) {
    let (a, b, c) = (tenant(), tenant(), tenant());
    let lim = limits(-1, -1, -1, -1);
    let a_keep = save(&a, 10);
    let a_drop = save(&a, 20);
    let a_done = save(&a, 30);
    for r in [&a_keep, &a_drop, &a_done] {
        store.reserve(r, &lim, LONG_LEASE).await.unwrap();
    }
    store.commit(&a, a_done.operation, None).await.unwrap();
    // Tenant c's operation is live in the database but unknown to the store (lost data).
    let c_lost = save(&c, 70);
    // The database still lists a_done as unfinished (it lags): it must not count twice.
    let live = [a_keep.clone(), c_lost.clone(), a_done.clone()];
    let totals = [TenantTotals {
        tenant: b.clone(),
        states: 3,
        bytes: 300,
    }];
    store
        .rebuild(&totals, &[], &live, LONG_LEASE)
        .await
        .unwrap();
    assert!(store.is_primed().await.unwrap());

    let ua = store.usage(&a, &lim).await.unwrap();
    assert_eq!(
        (ua.states.in_use, ua.state_bytes.in_use),
        (0, 0),
        "tenant absent from totals drops to zero"
    );
    assert_eq!(
        (
            ua.states.reserved,
            ua.state_bytes.reserved,
            ua.concurrent_operations.reserved
        ),
        (1, 10, 1)
    );
    let ub = store.usage(&b, &lim).await.unwrap();
    assert_eq!(
        (ub.states.in_use, ub.state_bytes.in_use, ub.states.reserved),
        (3, 300, 0)
    );
    let uc = store.usage(&c, &lim).await.unwrap();
    assert_eq!(
        (
            uc.states.reserved,
            uc.state_bytes.reserved,
            uc.saves_per_hour.reserved
        ),
        (1, 70, 1)
    );

    // The recreated reservation behaves like any other.
    store.commit(&c, c_lost.operation, Some(60)).await.unwrap();
    let uc = store.usage(&c, &lim).await.unwrap();
    assert_eq!(
        (uc.states.in_use, uc.state_bytes.in_use, uc.states.reserved),
        (1, 60, 0)
    );

    // Rebuilding again with the same truth changes nothing (b's truth was set, a still holds).
    store
        .rebuild(&totals, &[], &live, LONG_LEASE)
        .await
        .unwrap();
    let ua2 = store.usage(&a, &lim).await.unwrap();
    assert_eq!(ua2, ua);
}

/// After a restart (a fresh in-process store) or a flush (Redis), the succeeded saves of the
/// last hour that the database shows are the hourly window again: the rate stays enforced,
/// and the `Retry-After` counts from the oldest of them.
pub async fn rebuild_restores_the_hourly_window(store: &dyn QuotaStore) {
    let t = tenant();
    let lim = limits(-1, -1, -1, 3);
    let now = chrono::Utc::now();
    let recent = |minutes_ago: i64| RecentSave {
        tenant: t.clone(),
        operation: Uuid::now_v7(),
        at: now - chrono::Duration::minutes(minutes_ago),
    };
    // The third is older than an hour: out of the window.
    let saves = [recent(50), recent(10), recent(61)];
    store.rebuild(&[], &saves, &[], LONG_LEASE).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(u.saves_per_hour, usage_of(2, 0, 3));

    // A save committed here and also listed by the database counts once; a rebuild again
    // changes nothing.
    let c = save(&t, 1);
    store.reserve(&c, &lim, LONG_LEASE).await.unwrap();
    store.commit(&t, c.operation, None).await.unwrap();
    let mut with_c = saves.to_vec();
    with_c.push(RecentSave {
        tenant: t.clone(),
        operation: c.operation,
        at: chrono::Utc::now(),
    });
    store.rebuild(&[], &with_c, &[], LONG_LEASE).await.unwrap();
    store.rebuild(&[], &with_c, &[], LONG_LEASE).await.unwrap();
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(u.saves_per_hour, usage_of(3, 0, 3));

    // The limit is reached: the next save waits until the oldest (50 minutes ago) leaves.
    match store.reserve(&save(&t, 1), &lim, LONG_LEASE).await {
        Err(QuotaError::RateLimited { retry_after_secs }) => assert!(
            (9 * 60..=10 * 60 + 1).contains(&retry_after_secs),
            "retry after {retry_after_secs} s"
        ),
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

/// 200 reserves at once, limit 10 states: exactly 10 pass, across every store given (several
/// stores sharing one backend are several gateways).
pub async fn race_exactly_limit(stores: &[Arc<dyn QuotaStore>]) {
    let t = tenant();
    let lim = limits(10, -1, -1, -1);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let r = save(&t, 1);
            tokio::spawn(async move { store.reserve(&r, &lim, LONG_LEASE).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(QuotaError::Exceeded {
                resource: QuotaResource::States,
                limit: 10,
                ..
            }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(ok, 10);
    let u = stores[0].usage(&t, &lim).await.unwrap();
    assert_eq!(u.states, usage_of(0, 10, 10));
}

pub async fn elapsed<T>(work: impl std::future::Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = work.await;
    (out, start.elapsed())
}

/// `check` gives the answer `reserve` would give, and changes nothing: not the usage, not the
/// hourly window, however often it is asked (dry runs).
pub async fn check_answers_like_reserve_and_changes_nothing(store: &dyn QuotaStore) {
    let t = tenant();
    let lim = limits(3, -1, 3, 2);
    // Nothing held: everything fits, and a hundred checks reserve nothing.
    for _ in 0..100 {
        store.check(&save(&t, 10), &lim).await.unwrap();
    }
    let u = store.usage(&t, &lim).await.unwrap();
    assert_eq!(
        (u.states, u.concurrent_operations, u.saves_per_hour),
        (usage_of(0, 0, 3), usage_of(0, 0, 3), usage_of(0, 0, 2)),
        "checks reserved something"
    );

    // One kept state and one running save: the hourly rate is reached.
    let kept = save(&t, 10);
    store.reserve(&kept, &lim, LONG_LEASE).await.unwrap();
    store.commit(&t, kept.operation, None).await.unwrap();
    store
        .reserve(&save(&t, 10), &lim, LONG_LEASE)
        .await
        .unwrap();
    let before = store.usage(&t, &lim).await.unwrap();
    let checked = store.check(&save(&t, 10), &lim).await;
    let reserved = store.reserve(&save(&t, 10), &lim, LONG_LEASE).await;
    match (&checked, &reserved) {
        (
            Err(QuotaError::RateLimited {
                retry_after_secs: a,
            }),
            Err(QuotaError::RateLimited {
                retry_after_secs: b,
            }),
        ) => assert!(a.abs_diff(*b) <= 1, "{a} vs {b}"),
        other => panic!("expected both rate limited, got {other:?}"),
    }
    // States are full too (1 in use + 1 reserved of 2) once the rate no longer binds.
    let no_rate = limits(2, -1, 3, -1);
    for r in [
        store.check(&save(&t, 10), &no_rate).await,
        store.reserve(&save(&t, 10), &no_rate, LONG_LEASE).await,
    ] {
        match r {
            Err(QuotaError::Exceeded {
                resource: QuotaResource::States,
                in_use: 1,
                reserved: 1,
                ..
            }) => {}
            other => panic!("expected states exceeded, got {other:?}"),
        }
    }
    // A slot-only operation still fits, by check and by reserve alike.
    store.check(&slot_only(&t), &lim).await.unwrap();
    assert_eq!(store.usage(&t, &lim).await.unwrap(), before);
    store
        .reserve(&slot_only(&t), &lim, LONG_LEASE)
        .await
        .unwrap();
    // The last slot of three is taken: check refuses like reserve.
    match store.check(&slot_only(&t), &limits(2, -1, 2, 2)).await {
        Err(QuotaError::Exceeded {
            resource: QuotaResource::ConcurrentOperations,
            ..
        }) => {}
        other => panic!("expected concurrent_operations exceeded, got {other:?}"),
    }
}
