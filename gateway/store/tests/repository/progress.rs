//! Progress samples and cancel requests: a sample is written only by the lease holder of an
//! unfinished operation; a cancel request by anyone, only on an unfinished save, keeping the
//! first request's time; an end keeps both.

use std::sync::Arc;

use chrono::Duration;
use snapgate_core::ports::{CancelRequest, RepoError, Repository};
use snapgate_core::{OperationKind, OperationStatus, Progress};
use snapgate_store::SeaRepository;
use uuid::Uuid;

use crate::support::{available, ended, new_operation, new_state, now};

on_both_backends!(
    progress_is_written_under_the_lease_and_kept_by_the_end,
    a_cancel_is_recorded_once_on_an_unfinished_save_only,
);

fn sample(bytes: i64, percent: f64) -> Progress {
    Progress {
        phase: "memory".into(),
        bytes_processed: bytes,
        bytes_total: Some(1 << 30),
        percent: Some(percent),
        updated_at: now(),
    }
}

async fn progress_is_written_under_the_lease_and_kept_by_the_end(repo: Arc<SeaRepository>) {
    let state = new_state(Uuid::new_v4(), "tenant-a", "progress", now());
    let op = new_operation(&state, OperationKind::Save);
    repo.begin_save(&state, &op).await.unwrap();
    assert_eq!(
        repo.get_operation(op.uuid).await.unwrap().unwrap().progress,
        None
    );

    let first = sample(1 << 20, 10.0);
    repo.record_progress(op.uuid, 0, &first).await.unwrap();
    let read = repo.get_operation(op.uuid).await.unwrap().unwrap();
    assert_eq!(read.progress, Some(first.clone()));
    assert!(read.may_cancel, "a save not yet ended may be cancelled");

    // Another gateway takes the save over: the old holder's samples are refused.
    repo.take_over_operation(op.uuid, 0, now() + Duration::minutes(1), "gateway-b", now())
        .await
        .unwrap();
    assert!(matches!(
        repo.record_progress(op.uuid, 0, &sample(2 << 20, 20.0)).await,
        Err(RepoError::Fenced(id)) if id == op.uuid
    ));
    let second = sample(3 << 20, 30.0);
    repo.record_progress(op.uuid, 1, &second).await.unwrap();
    assert_eq!(
        repo.get_operation(op.uuid).await.unwrap().unwrap().progress,
        Some(second.clone())
    );

    // An end that sampled nothing (a takeover) keeps the last sample; after the end no sample
    // lands, not even the holder's.
    let mut end = ended(&op, OperationStatus::Failed);
    end.lease_epoch = 1;
    repo.finish_operation(&end, None).await.unwrap();
    let read = repo.get_operation(op.uuid).await.unwrap().unwrap();
    assert_eq!(read.progress, Some(second));
    assert!(!read.may_cancel);
    assert!(matches!(
        repo.record_progress(op.uuid, 1, &sample(4 << 20, 40.0))
            .await,
        Err(RepoError::Fenced(_))
    ));
    assert!(matches!(
        repo.record_progress(Uuid::new_v4(), 0, &sample(1, 1.0))
            .await,
        Err(RepoError::NotFound)
    ));
}

async fn a_cancel_is_recorded_once_on_an_unfinished_save_only(repo: Arc<SeaRepository>) {
    let state = new_state(Uuid::new_v4(), "tenant-a", "cancel", now());
    let op = new_operation(&state, OperationKind::Save);
    repo.begin_save(&state, &op).await.unwrap();
    assert_eq!(repo.cancel_requested(op.uuid).await.unwrap(), None);

    let first = now();
    assert_eq!(
        repo.request_cancel(op.uuid, first).await.unwrap(),
        CancelRequest::Recorded
    );
    // A repeat stands, and keeps the first request's time.
    assert_eq!(
        repo.request_cancel(op.uuid, first + Duration::seconds(5))
            .await
            .unwrap(),
        CancelRequest::Recorded
    );
    assert_eq!(repo.cancel_requested(op.uuid).await.unwrap(), Some(first));

    // The end (by the holder of the lease) keeps the request on the record.
    let end = ended(&op, OperationStatus::Failed);
    repo.finish_operation(&end, None).await.unwrap();
    let read = repo.get_operation(op.uuid).await.unwrap().unwrap();
    assert_eq!(read.cancel_requested_at, Some(first));
    assert_eq!(
        repo.request_cancel(op.uuid, now()).await.unwrap(),
        CancelRequest::Finished
    );

    // Applies and deletes cannot be cancelled; an unknown operation is not found.
    let kept = available(&repo, Uuid::new_v4(), "kept").await;
    let apply = new_operation(&kept, OperationKind::Apply);
    repo.begin_state_operation(
        &apply,
        &[snapgate_core::StateStatus::Available],
        snapgate_core::StateStatus::Applying,
    )
    .await
    .unwrap();
    assert_eq!(
        repo.request_cancel(apply.uuid, now()).await.unwrap(),
        CancelRequest::NotCancellable
    );
    assert_eq!(repo.cancel_requested(apply.uuid).await.unwrap(), None);
    assert!(matches!(
        repo.request_cancel(Uuid::new_v4(), now()).await,
        Err(RepoError::NotFound)
    ));
}
