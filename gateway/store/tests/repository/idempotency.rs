//! Idempotency keys: claims, answers written with their operation, takeover and purge.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use snapgate_core::ports::{IdempotencyClaim, KeyClaim, KeyedAnswer, RepoError, Repository};
use snapgate_core::{OperationKind, StateStatus};
use snapgate_store::SeaRepository;
use uuid::Uuid;

use crate::support::{available, new_operation, new_state, now};

on_both_backends!(
    the_first_claim_wins_and_the_answer_comes_with_its_operation,
    a_claim_taken_over_stores_nothing_and_its_operation_is_rolled_back,
    keys_are_per_tenant_released_claims_and_expired_answers_free_the_key,
    expired_keys_are_purged_in_batches_soonest_first,
);

fn claim(tenant: &str, key: &str, fingerprint: &str, expires_in: Duration) -> IdempotencyClaim {
    let at = now();
    IdempotencyClaim {
        tenant: tenant.to_owned(),
        key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
        token: Uuid::new_v4(),
        claimed_at: at,
        expires_at: at + expires_in,
    }
}

fn answer(claim: &IdempotencyClaim, operation: Uuid) -> KeyedAnswer {
    KeyedAnswer {
        claim: claim.clone(),
        answer: format!("{{\"operation\":\"{operation}\"}}"),
        operation,
        expires_at: now() + Duration::hours(24),
    }
}

/// Long ago: no claim counts as abandoned.
fn never() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

async fn the_first_claim_wins_and_the_answer_comes_with_its_operation(repo: Arc<SeaRepository>) {
    let first = claim("tenant-a", "k1", "f1", Duration::hours(24));
    assert_eq!(
        repo.claim_idempotency_key(&first, never()).await.unwrap(),
        KeyClaim::Claimed
    );
    // A duplicate while the first runs: the claim, no answer yet.
    let duplicate = claim("tenant-a", "k1", "f1", Duration::hours(24));
    match repo
        .claim_idempotency_key(&duplicate, never())
        .await
        .unwrap()
    {
        KeyClaim::Held(record) => {
            assert_eq!((record.fingerprint.as_str(), record.answer), ("f1", None))
        }
        other => panic!("{other:?}"),
    }
    let state = new_state(Uuid::new_v4(), "tenant-a", "keyed", now());
    let op = new_operation(&state, OperationKind::Save);
    repo.begin_keyed_save(&state, &op, Some(&answer(&first, op.uuid)))
        .await
        .unwrap();
    match repo
        .claim_idempotency_key(&duplicate, never())
        .await
        .unwrap()
    {
        KeyClaim::Held(record) => {
            assert_eq!(record.answer, Some(answer(&first, op.uuid).answer));
        }
        other => panic!("{other:?}"),
    }
    // An answered key is not released by its (former) claim.
    repo.release_idempotency_key(&first).await.unwrap();
    assert!(matches!(
        repo.claim_idempotency_key(&duplicate, never())
            .await
            .unwrap(),
        KeyClaim::Held(_)
    ));
    // Apply and delete store theirs the same way.
    let kept = available(&repo, Uuid::new_v4(), "kept").await;
    let apply_claim = claim("tenant-a", "k2", "f2", Duration::hours(24));
    repo.claim_idempotency_key(&apply_claim, never())
        .await
        .unwrap();
    let apply = new_operation(&kept, OperationKind::Apply);
    repo.begin_keyed_state_operation(
        &apply,
        &[StateStatus::Available],
        StateStatus::Applying,
        Some(&answer(&apply_claim, apply.uuid)),
    )
    .await
    .unwrap();
    let again = claim("tenant-a", "k2", "f2", Duration::hours(24));
    match repo.claim_idempotency_key(&again, never()).await.unwrap() {
        KeyClaim::Held(record) => assert!(record.answer.is_some()),
        other => panic!("{other:?}"),
    }
}

/// A request that ran past its claim (its gateway was paused, or the key expired under it)
/// finds the key taken when it records its operation: neither the answer nor the operation is
/// written, so one key never accepts twice.
async fn a_claim_taken_over_stores_nothing_and_its_operation_is_rolled_back(
    repo: Arc<SeaRepository>,
) {
    let slow = claim("tenant-a", "k", "f", Duration::hours(24));
    repo.claim_idempotency_key(&slow, never()).await.unwrap();
    // The claim is older than the cutoff: abandoned, taken over (whatever the request).
    let taker = claim("tenant-a", "k", "other", Duration::hours(24));
    assert_eq!(
        repo.claim_idempotency_key(&taker, now() + Duration::seconds(1))
            .await
            .unwrap(),
        KeyClaim::Claimed
    );
    let state = new_state(Uuid::new_v4(), "tenant-a", "late", now());
    let op = new_operation(&state, OperationKind::Save);
    let err = repo
        .begin_keyed_save(&state, &op, Some(&answer(&slow, op.uuid)))
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::IdempotencyKeyTaken), "{err:?}");
    assert_eq!(repo.get_state(state.uuid).await.unwrap(), None);
    assert_eq!(repo.get_operation(op.uuid).await.unwrap(), None);
    // The instance is not left locked: the taker's save goes through.
    let next = new_state(state.instance_uuid, "tenant-a", "late", now());
    let next_op = new_operation(&next, OperationKind::Save);
    repo.begin_keyed_save(&next, &next_op, Some(&answer(&taker, next_op.uuid)))
        .await
        .unwrap();
    // The slow request's release does not drop the taker's key.
    repo.release_idempotency_key(&slow).await.unwrap();
    match repo
        .claim_idempotency_key(
            &claim("tenant-a", "k", "other", Duration::hours(1)),
            never(),
        )
        .await
        .unwrap()
    {
        KeyClaim::Held(record) => assert!(record.answer.is_some()),
        other => panic!("{other:?}"),
    }

    // A claim purged under its request (a key lifetime shorter than the request) is written
    // anew with the answer, as long as nobody took the key meanwhile.
    let short = claim("tenant-a", "short", "f", Duration::zero());
    repo.claim_idempotency_key(&short, never()).await.unwrap();
    assert_eq!(repo.purge_idempotency_keys(now(), 10).await.unwrap(), 1);
    let state = new_state(Uuid::new_v4(), "tenant-a", "short", now());
    let op = new_operation(&state, OperationKind::Save);
    repo.begin_keyed_save(&state, &op, Some(&answer(&short, op.uuid)))
        .await
        .unwrap();
    assert!(matches!(
        repo.claim_idempotency_key(&claim("tenant-a", "short", "f", Duration::hours(1)), never())
            .await
            .unwrap(),
        KeyClaim::Held(r) if r.answer.is_some()
    ));
}

async fn keys_are_per_tenant_released_claims_and_expired_answers_free_the_key(
    repo: Arc<SeaRepository>,
) {
    let a = claim("tenant-a", "shared", "fa", Duration::hours(1));
    let b = claim("tenant-b", "shared", "fb", Duration::hours(1));
    assert_eq!(
        repo.claim_idempotency_key(&a, never()).await.unwrap(),
        KeyClaim::Claimed
    );
    assert_eq!(
        repo.claim_idempotency_key(&b, never()).await.unwrap(),
        KeyClaim::Claimed,
        "another tenant's key of the same name is another key"
    );
    // A request that accepted nothing gives its key back.
    repo.release_idempotency_key(&a).await.unwrap();
    let again = claim("tenant-a", "shared", "another request", Duration::hours(1));
    assert_eq!(
        repo.claim_idempotency_key(&again, never()).await.unwrap(),
        KeyClaim::Claimed
    );
    // An answer past its expiry binds nothing, purged or not.
    let state = new_state(Uuid::new_v4(), "tenant-a", "expiring", now());
    let op = new_operation(&state, OperationKind::Save);
    let mut expired = answer(&again, op.uuid);
    expired.expires_at = now() - Duration::seconds(1);
    repo.begin_keyed_save(&state, &op, Some(&expired))
        .await
        .unwrap();
    let later = claim("tenant-a", "shared", "a third request", Duration::hours(1));
    assert_eq!(
        repo.claim_idempotency_key(&later, never()).await.unwrap(),
        KeyClaim::Claimed
    );
}

async fn expired_keys_are_purged_in_batches_soonest_first(repo: Arc<SeaRepository>) {
    for i in 0..5 {
        let c = claim(
            "tenant-a",
            &format!("old-{i}"),
            "f",
            Duration::seconds(-100 + i),
        );
        repo.claim_idempotency_key(&c, never()).await.unwrap();
    }
    let live = claim("tenant-a", "live", "f", Duration::hours(1));
    repo.claim_idempotency_key(&live, never()).await.unwrap();
    let at = now();
    assert_eq!(repo.purge_idempotency_keys(at, 2).await.unwrap(), 2);
    assert_eq!(
        keys(&repo).await,
        ["live", "old-2", "old-3", "old-4"],
        "the soonest expired go first"
    );
    assert_eq!(repo.purge_idempotency_keys(at, 2).await.unwrap(), 2);
    assert_eq!(repo.purge_idempotency_keys(at, 2).await.unwrap(), 1);
    assert_eq!(repo.purge_idempotency_keys(at, 2).await.unwrap(), 0);
    assert_eq!(keys(&repo).await, ["live"], "a live key stays");
}

async fn keys(repo: &SeaRepository) -> Vec<String> {
    use sea_orm::{EntityTrait, QueryOrder};
    use snapgate_store::entity::idempotency_keys;
    idempotency_keys::Entity::find()
        .order_by_asc(idempotency_keys::Column::IdempotencyKey)
        .all(repo.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.idempotency_key)
        .collect()
}
