//! Many requests at once on one instance: the lock admits exactly one.

use std::sync::Arc;

use snapgate_core::ports::{RepoError, Repository};
use snapgate_core::{OperationKind, StateStatus};
use snapgate_store::SeaRepository;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::support::{available, new_operation, new_state, now};

on_both_backends!(
    fifty_saves_at_once_admit_exactly_one,
    twenty_applies_at_once_admit_exactly_one
);

async fn fifty_saves_at_once_admit_exactly_one(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    let mut tasks = JoinSet::new();
    for i in 0..50 {
        let repo = Arc::clone(&repo);
        tasks.spawn(async move {
            let state = new_state(instance, "tenant-a", &format!("concurrent-{i}"), now());
            let op = new_operation(&state, OperationKind::Save);
            (op.uuid, repo.begin_save(&state, &op).await)
        });
    }
    let mut winners = Vec::new();
    let mut holders = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            (op, Ok(())) => winners.push(op),
            (_, Err(RepoError::InstanceBusy(holder))) => holders.push(holder),
            (_, Err(other)) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one save wins");
    assert_eq!(holders.len(), 49);
    assert!(
        holders.iter().all(|h| *h == winners[0]),
        "every loser names the winner"
    );
    assert_eq!(repo.count_states(instance).await.unwrap(), 1);
    assert_eq!(repo.unfinished_operations().await.unwrap().len(), 1);
}

async fn twenty_applies_at_once_admit_exactly_one(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    let state = available(&repo, instance, "golden").await;
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let (repo, state) = (Arc::clone(&repo), state.clone());
        tasks.spawn(async move {
            let op = new_operation(&state, OperationKind::Apply);
            repo.begin_state_operation(&op, &[StateStatus::Available], StateStatus::Applying)
                .await
        });
    }
    let mut admitted = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(()) => admitted += 1,
            // Losers see the state already applying (or, at worst, the instance busy).
            Err(RepoError::WrongStatus(StateStatus::Applying) | RepoError::InstanceBusy(_)) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(admitted, 1);
    assert_eq!(repo.unfinished_operations().await.unwrap().len(), 1);
}
