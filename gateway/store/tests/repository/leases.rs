//! Operation leases: a stale operation is taken over by exactly one gateway (a compare-and-set
//! on its epoch and its staleness), and from then on every write of the old holder is refused
//! with `Fenced` and changes nothing.

use std::sync::Arc;

use chrono::Duration;
use snapgate_core::ports::{RepoError, Repository};
use snapgate_core::{ErrorInfo, Operation, OperationKind, OperationStatus, State, StateStatus};
use snapgate_store::SeaRepository;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::support::{ended, new_operation, new_state, now};

on_both_backends!(
    a_stale_operation_is_taken_over_once_and_a_live_one_not_at_all,
    twenty_gateways_taking_over_at_once_admit_exactly_one,
    the_old_holder_is_fenced_from_every_write,
    a_takeover_racing_the_old_holders_end_leaves_exactly_one_end,
);

/// A save recorded by "gateway-a" whose last heartbeat was a minute ago.
async fn stale_save(repo: &SeaRepository, name: &str) -> (State, Operation) {
    let state = new_state(Uuid::new_v4(), "tenant-a", name, now());
    let op = new_operation(&state, OperationKind::Save);
    repo.begin_save(&state, &op).await.unwrap();
    repo.mark_running(op.uuid, 0, now() - Duration::minutes(1))
        .await
        .unwrap();
    let op = repo.get_operation(op.uuid).await.unwrap().unwrap();
    (state, op)
}

fn stale_before() -> chrono::DateTime<chrono::Utc> {
    now() - Duration::seconds(30)
}

async fn a_stale_operation_is_taken_over_once_and_a_live_one_not_at_all(repo: Arc<SeaRepository>) {
    let (_, op) = stale_save(&repo, "stale").await;
    assert_eq!(
        (op.lease_epoch, op.lease_owner.as_deref()),
        (0, Some("gateway-a"))
    );

    let at = now();
    let taken = repo
        .take_over_operation(op.uuid, 0, stale_before(), "gateway-b", at)
        .await
        .unwrap();
    assert_eq!(
        (
            taken.lease_epoch,
            taken.lease_owner.as_deref(),
            taken.updated_at
        ),
        (1, Some("gateway-b"), at)
    );
    assert_eq!(taken.status, OperationStatus::Running);
    assert_eq!(
        repo.get_operation(op.uuid).await.unwrap(),
        Some(taken.clone())
    );

    // A second taker that saw the same epoch is refused, even if the operation were stale.
    let later = now() + Duration::minutes(5);
    assert!(matches!(
        repo.take_over_operation(op.uuid, 0, later, "gateway-c", later).await,
        Err(RepoError::Fenced(id)) if id == op.uuid
    ));
    // The new holder's heartbeat keeps it: not stale, not taken.
    assert!(matches!(
        repo.take_over_operation(op.uuid, 1, stale_before(), "gateway-c", now())
            .await,
        Err(RepoError::Fenced(_))
    ));
    assert_eq!(repo.get_operation(op.uuid).await.unwrap(), Some(taken));

    assert!(matches!(
        repo.take_over_operation(Uuid::new_v4(), 0, stale_before(), "gateway-c", now())
            .await,
        Err(RepoError::NotFound)
    ));
}

async fn twenty_gateways_taking_over_at_once_admit_exactly_one(repo: Arc<SeaRepository>) {
    let (_, op) = stale_save(&repo, "contended").await;
    let stale_before = stale_before();
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let repo = Arc::clone(&repo);
        tasks.spawn(async move {
            let owner = format!("gateway-{i}");
            repo.take_over_operation(op.uuid, 0, stale_before, &owner, now())
                .await
                .map(|taken| (owner, taken))
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(won) => winners.push(won),
            Err(RepoError::Fenced(id)) => assert_eq!(id, op.uuid),
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one gateway takes it over");
    let stored = repo.get_operation(op.uuid).await.unwrap().unwrap();
    assert_eq!(stored.lease_epoch, 1);
    assert_eq!(stored.lease_owner, Some(winners[0].0.clone()));
}

async fn the_old_holder_is_fenced_from_every_write(repo: Arc<SeaRepository>) {
    let (state, op) = stale_save(&repo, "taken").await;
    let taken = repo
        .take_over_operation(op.uuid, 0, stale_before(), "gateway-b", now())
        .await
        .unwrap();

    // Gateway A wakes up: its heartbeat, a start and its end of the save are all refused.
    assert!(matches!(
        repo.touch_operation(op.uuid, 0, now()).await,
        Err(RepoError::Fenced(id)) if id == op.uuid
    ));
    assert!(matches!(
        repo.mark_running(op.uuid, 0, now()).await,
        Err(RepoError::Fenced(_))
    ));
    let saved = State {
        status: StateStatus::Available,
        size_bytes: Some(4096),
        ..state.clone()
    };
    assert!(matches!(
        repo.finish_operation(&ended(&op, OperationStatus::Succeeded), Some(&saved)).await,
        Err(RepoError::Fenced(id)) if id == op.uuid
    ));
    // Nothing changed: the operation is B's and unfinished, the state is saving, the lock held.
    assert_eq!(
        repo.get_operation(op.uuid).await.unwrap(),
        Some(taken.clone())
    );
    assert_eq!(
        repo.get_state(state.uuid).await.unwrap(),
        Some(state.clone())
    );
    let next = new_state(state.instance_uuid, "tenant-a", "next", now());
    assert!(matches!(
        repo.begin_save(&next, &new_operation(&next, OperationKind::Save)).await,
        Err(RepoError::InstanceBusy(holder)) if holder == op.uuid
    ));

    // B rolls the save back and ends it; the lock goes.
    let interrupted = ErrorInfo::new("interrupted", "rolled back");
    let b_end = Operation {
        error: Some(interrupted.clone()),
        ..ended(&taken, OperationStatus::Failed)
    };
    let failed = State {
        status: StateStatus::Error,
        error: Some(interrupted),
        ..state.clone()
    };
    repo.touch_operation(op.uuid, 1, now()).await.unwrap();
    repo.finish_operation(&b_end, Some(&failed)).await.unwrap();
    // A repeat of B's end changes nothing and succeeds; A's late end is still refused.
    repo.finish_operation(&b_end, Some(&failed)).await.unwrap();
    assert!(matches!(
        repo.finish_operation(&ended(&op, OperationStatus::Succeeded), Some(&saved))
            .await,
        Err(RepoError::Fenced(_))
    ));
    assert!(matches!(
        repo.touch_operation(op.uuid, 1, now()).await,
        Err(RepoError::Fenced(_))
    ));
    let stored = repo.get_operation(op.uuid).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.status,
            stored.lease_epoch,
            stored.lease_owner.as_deref()
        ),
        (OperationStatus::Failed, 1, Some("gateway-b"))
    );
    assert_eq!(repo.get_state(state.uuid).await.unwrap(), Some(failed));
    repo.begin_save(&next, &new_operation(&next, OperationKind::Save))
        .await
        .unwrap();
}

async fn a_takeover_racing_the_old_holders_end_leaves_exactly_one_end(repo: Arc<SeaRepository>) {
    for i in 0..10 {
        let (state, op) = stale_save(&repo, &format!("race-{i}")).await;
        let saved = State {
            status: StateStatus::Available,
            size_bytes: Some(4096),
            ..state.clone()
        };
        let (repo_a, repo_b) = (Arc::clone(&repo), Arc::clone(&repo));
        let a_end = ended(&op, OperationStatus::Succeeded);
        let a = tokio::spawn(async move { repo_a.finish_operation(&a_end, Some(&saved)).await });
        let b = tokio::spawn(async move {
            repo_b
                .take_over_operation(op.uuid, 0, stale_before(), "gateway-b", now())
                .await
        });
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let stored = repo.get_operation(op.uuid).await.unwrap().unwrap();
        match (a, b) {
            (Ok(()), Err(RepoError::Fenced(_))) => {
                assert_eq!(
                    (stored.status, stored.lease_epoch),
                    (OperationStatus::Succeeded, 0)
                );
                assert_eq!(
                    repo.get_state(state.uuid).await.unwrap().unwrap().status,
                    StateStatus::Available
                );
            }
            (Err(RepoError::Fenced(_)), Ok(taken)) => {
                assert_eq!(stored, taken);
                assert_eq!(
                    (stored.status, stored.lease_epoch),
                    (OperationStatus::Running, 1)
                );
                assert_eq!(repo.get_state(state.uuid).await.unwrap(), Some(state));
            }
            other => panic!("exactly one of the end and the takeover must win: {other:?}"),
        }
    }
}
