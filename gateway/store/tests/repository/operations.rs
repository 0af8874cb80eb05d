//! Operation queries and the purge of old ones.

use std::sync::Arc;

use chrono::Duration;
use snapgate_core::ports::{OperationEnd, Repository};
use snapgate_core::{Operation, OperationKind, OperationStatus};
use snapgate_store::SeaRepository;
use uuid::Uuid;

use crate::support::{available, ended, new_operation, new_state, now};

on_both_backends!(
    unfinished_operations_oldest_first,
    purge_removes_only_old_finished_operations,
    finished_operations_answers_for_many_ids_at_once,
    operation_ends_are_announced_on_postgres
);

async fn unfinished_operations_oldest_first(repo: Arc<SeaRepository>) {
    let mut begun = Vec::new();
    for (i, age) in [5i64, 60, 1].into_iter().enumerate() {
        let state = new_state(Uuid::new_v4(), "tenant-a", &format!("s{i}"), now());
        let op = Operation {
            created_at: now() - Duration::seconds(age),
            ..new_operation(&state, OperationKind::Save)
        };
        repo.begin_save(&state, &op).await.unwrap();
        begun.push(op);
    }
    repo.mark_running(begun[0].uuid, 0, now()).await.unwrap();
    // A finished one is not listed.
    available(&repo, Uuid::new_v4(), "done").await;

    let unfinished = repo.unfinished_operations().await.unwrap();
    let ids: Vec<Uuid> = unfinished.iter().map(|o| o.uuid).collect();
    assert_eq!(ids, vec![begun[1].uuid, begun[0].uuid, begun[2].uuid]);
    assert_eq!(unfinished[1].status, OperationStatus::Running);
}

async fn purge_removes_only_old_finished_operations(repo: Arc<SeaRepository>) {
    let long_ago = now() - Duration::days(30);
    let finish = |age: Option<Duration>, status: OperationStatus| {
        let repo = Arc::clone(&repo);
        async move {
            let state = new_state(Uuid::new_v4(), "tenant-a", "s", now());
            let op = new_operation(&state, OperationKind::Save);
            repo.begin_save(&state, &op).await.unwrap();
            if let Some(age) = age {
                let at = now() - age;
                let done = Operation {
                    status,
                    finished_at: Some(at),
                    updated_at: at,
                    ..op.clone()
                };
                repo.finish_operation(&done, Some(&state)).await.unwrap();
            }
            op.uuid
        }
    };
    let old_success = finish(Some(Duration::days(40)), OperationStatus::Succeeded).await;
    let old_failure = finish(Some(Duration::days(31)), OperationStatus::Failed).await;
    let recent = finish(Some(Duration::days(1)), OperationStatus::Succeeded).await;
    let unfinished = finish(None, OperationStatus::Running).await;

    assert_eq!(repo.purge_operations(long_ago).await.unwrap(), 2);
    assert_eq!(repo.get_operation(old_success).await.unwrap(), None);
    assert_eq!(repo.get_operation(old_failure).await.unwrap(), None);
    assert!(repo.get_operation(recent).await.unwrap().is_some());
    assert!(repo.get_operation(unfinished).await.unwrap().is_some());
    // Nothing left to purge; unfinished operations are never purged, however old.
    assert_eq!(
        repo.purge_operations(now() + Duration::days(1))
            .await
            .unwrap(),
        1
    );
    assert!(repo.get_operation(unfinished).await.unwrap().is_some());
}

/// The waiters' shared check: one query names which of the awaited operations ended.
async fn finished_operations_answers_for_many_ids_at_once(repo: Arc<SeaRepository>) {
    let running_state = new_state(Uuid::new_v4(), "tenant-a", "running", now());
    let running = new_operation(&running_state, OperationKind::Save);
    repo.begin_save(&running_state, &running).await.unwrap();
    let done_state = new_state(Uuid::new_v4(), "tenant-a", "done", now());
    let done = new_operation(&done_state, OperationKind::Save);
    repo.begin_save(&done_state, &done).await.unwrap();
    repo.finish_operation(&ended(&done, OperationStatus::Failed), Some(&done_state))
        .await
        .unwrap();
    let unknown = Uuid::new_v4();
    let found = repo
        .finished_operations(&[running.uuid, done.uuid, unknown])
        .await
        .unwrap();
    assert_eq!(found, vec![done.uuid]);
    assert!(repo.finished_operations(&[]).await.unwrap().is_empty());
}

/// PostgreSQL: the end of an operation reaches every listener when its transaction commits.
/// SQLite has no feed (its gateways poll once for all their waiters).
async fn operation_ends_are_announced_on_postgres(repo: Arc<SeaRepository>) {
    let feed = repo.operation_end_feed().await.unwrap();
    let Some(mut feed) = feed else {
        assert_eq!(repo.backend(), snapgate_store::Backend::Sqlite);
        return;
    };
    let state = new_state(Uuid::new_v4(), "tenant-a", "announced", now());
    let op = new_operation(&state, OperationKind::Save);
    repo.begin_save(&state, &op).await.unwrap();
    repo.finish_operation(&ended(&op, OperationStatus::Succeeded), Some(&state))
        .await
        .unwrap();
    assert_eq!(feed.next().await.unwrap(), OperationEnd::Ended(op.uuid));
}
