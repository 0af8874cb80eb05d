//! Saving, changing and ending states: the transactions and their errors.

use std::sync::Arc;

use snapgate_core::ports::{RepoError, Repository};
use snapgate_core::{ErrorInfo, OperationKind, OperationStatus, StateStatus};
use snapgate_store::SeaRepository;
use uuid::Uuid;

use crate::support::{available, ended, new_operation, new_state, now};

on_both_backends!(
    save_records_state_operation_and_lock,
    duplicate_name_is_refused_even_while_busy,
    busy_instance_names_the_holder_and_leaves_no_trace,
    state_operation_changes_status_only_from_the_given_ones,
    state_operation_on_a_busy_instance_changes_nothing,
    finish_writes_or_deletes_the_state_and_frees_the_lock,
    finish_is_idempotent_and_never_clobbers_a_newer_operation,
    running_and_heartbeat_update_only_unfinished_operations,
);

async fn save_records_state_operation_and_lock(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    let state = new_state(instance, "tenant-a", "before upgrade", now());
    let op = new_operation(&state, OperationKind::Save);
    repo.begin_save(&state, &op).await.unwrap();

    assert_eq!(
        repo.get_state(state.uuid).await.unwrap(),
        Some(state.clone())
    );
    assert_eq!(repo.get_operation(op.uuid).await.unwrap(), Some(op.clone()));
    assert_eq!(repo.count_states(instance).await.unwrap(), 1);
    assert_eq!(
        repo.states_of_instance(instance).await.unwrap(),
        vec![state.clone()]
    );
    assert_eq!(
        repo.unfinished_operations().await.unwrap(),
        vec![op.clone()]
    );
    assert_eq!(repo.get_state(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(repo.get_operation(Uuid::new_v4()).await.unwrap(), None);

    // A state without the optional parts round-trips too.
    let other = Uuid::new_v4();
    let bare = snapgate_core::State {
        description: None,
        memory_bytes: None,
        includes_memory: false,
        disk_formats: vec![],
        cpu: None,
        cpu_xml: None,
        snapshot_xml: None,
        expires_at: None,
        schedule_id: None,
        ..new_state(other, "tenant-b", "bare", now())
    };
    repo.begin_save(&bare, &new_operation(&bare, OperationKind::Save))
        .await
        .unwrap();
    assert_eq!(repo.get_state(bare.uuid).await.unwrap(), Some(bare));
}

async fn duplicate_name_is_refused_even_while_busy(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    available(&repo, instance, "nightly").await;

    let again = new_state(instance, "tenant-a", "nightly", now());
    let err = repo
        .begin_save(&again, &new_operation(&again, OperationKind::Save))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RepoError::DuplicateName(n) if n == "nightly"),
        "{err:?}"
    );

    // Busy with another save now: the name is still what is wrong.
    let running = new_state(instance, "tenant-a", "other", now());
    repo.begin_save(&running, &new_operation(&running, OperationKind::Save))
        .await
        .unwrap();
    let again = new_state(instance, "tenant-a", "nightly", now());
    let err = repo
        .begin_save(&again, &new_operation(&again, OperationKind::Save))
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::DuplicateName(_)), "{err:?}");

    // The same name on another instance is fine.
    let elsewhere = new_state(Uuid::new_v4(), "tenant-a", "nightly", now());
    repo.begin_save(&elsewhere, &new_operation(&elsewhere, OperationKind::Save))
        .await
        .unwrap();
}

async fn busy_instance_names_the_holder_and_leaves_no_trace(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    let first = new_state(instance, "tenant-a", "first", now());
    let first_op = new_operation(&first, OperationKind::Save);
    repo.begin_save(&first, &first_op).await.unwrap();

    let second = new_state(instance, "tenant-a", "second", now());
    let second_op = new_operation(&second, OperationKind::Save);
    let err = repo.begin_save(&second, &second_op).await.unwrap_err();
    assert!(
        matches!(err, RepoError::InstanceBusy(holder) if holder == first_op.uuid),
        "{err:?}"
    );
    // One transaction: the refused save left neither its state nor its operation.
    assert_eq!(repo.get_state(second.uuid).await.unwrap(), None);
    assert_eq!(repo.get_operation(second_op.uuid).await.unwrap(), None);
    assert_eq!(repo.count_states(instance).await.unwrap(), 1);

    // Once the first ends, the instance is free again.
    repo.finish_operation(&ended(&first_op, OperationStatus::Succeeded), Some(&first))
        .await
        .unwrap();
    repo.begin_save(&second, &second_op).await.unwrap();
}

async fn state_operation_changes_status_only_from_the_given_ones(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    let state = available(&repo, instance, "golden").await;

    let apply = new_operation(&state, OperationKind::Apply);
    repo.begin_state_operation(&apply, &[StateStatus::Available], StateStatus::Applying)
        .await
        .unwrap();
    let applying = repo.get_state(state.uuid).await.unwrap().unwrap();
    assert_eq!(applying.status, StateStatus::Applying);
    assert_eq!(applying.updated_at, apply.updated_at);
    assert_eq!(
        repo.get_operation(apply.uuid).await.unwrap(),
        Some(apply.clone())
    );

    // The status no longer matches: refused with the status it has.
    let delete = new_operation(&state, OperationKind::Delete);
    let err = repo
        .begin_state_operation(
            &delete,
            &[StateStatus::Available, StateStatus::Error],
            StateStatus::Deleting,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::WrongStatus(StateStatus::Applying)),
        "{err:?}"
    );
    assert_eq!(repo.get_operation(delete.uuid).await.unwrap(), None);

    // Unknown state, or a state of another instance: not found.
    let mut ghost = new_operation(&state, OperationKind::Apply);
    ghost.state_uuid = Uuid::new_v4();
    let err = repo
        .begin_state_operation(&ghost, &[StateStatus::Available], StateStatus::Applying)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::NotFound), "{err:?}");
    let mut elsewhere = new_operation(&state, OperationKind::Apply);
    elsewhere.instance_uuid = Uuid::new_v4();
    let err = repo
        .begin_state_operation(&elsewhere, &[StateStatus::Available], StateStatus::Applying)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::NotFound), "{err:?}");

    // The apply ends; the state is available again and can be deleted.
    let back = snapgate_core::State {
        status: StateStatus::Available,
        updated_at: now(),
        ..applying
    };
    repo.finish_operation(&ended(&apply, OperationStatus::Succeeded), Some(&back))
        .await
        .unwrap();
    repo.begin_state_operation(
        &delete,
        &[StateStatus::Available, StateStatus::Error],
        StateStatus::Deleting,
    )
    .await
    .unwrap();
    assert_eq!(
        repo.get_state(state.uuid).await.unwrap().unwrap().status,
        StateStatus::Deleting
    );
}

async fn state_operation_on_a_busy_instance_changes_nothing(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    let state = available(&repo, instance, "golden").await;
    let saving = new_state(instance, "tenant-a", "in progress", now());
    let save = new_operation(&saving, OperationKind::Save);
    repo.begin_save(&saving, &save).await.unwrap();

    let apply = new_operation(&state, OperationKind::Apply);
    let err = repo
        .begin_state_operation(&apply, &[StateStatus::Available], StateStatus::Applying)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::InstanceBusy(holder) if holder == save.uuid),
        "{err:?}"
    );
    // The status change was rolled back with the rest.
    assert_eq!(
        repo.get_state(state.uuid).await.unwrap().unwrap().status,
        StateStatus::Available
    );
    assert_eq!(repo.get_operation(apply.uuid).await.unwrap(), None);
}

async fn finish_writes_or_deletes_the_state_and_frees_the_lock(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    // A failed save keeps its record, in error, with the reason.
    let state = new_state(instance, "tenant-a", "doomed", now());
    let save = new_operation(&state, OperationKind::Save);
    repo.begin_save(&state, &save).await.unwrap();
    repo.mark_running(save.uuid, 0, now()).await.unwrap();
    let error = ErrorInfo::new("libvirt_error", "disk full");
    let failed_op = snapgate_core::Operation {
        error: Some(error.clone()),
        ..ended(&save, OperationStatus::Failed)
    };
    let failed_state = snapgate_core::State {
        status: StateStatus::Error,
        error: Some(error),
        updated_at: now(),
        ..state.clone()
    };
    repo.finish_operation(&failed_op, Some(&failed_state))
        .await
        .unwrap();
    let stored_op = repo.get_operation(save.uuid).await.unwrap().unwrap();
    assert_eq!(stored_op.status, OperationStatus::Failed);
    assert_eq!(stored_op.error, failed_op.error);
    assert_eq!(stored_op.finished_at, failed_op.finished_at);
    assert_eq!(
        repo.get_state(state.uuid).await.unwrap(),
        Some(failed_state.clone())
    );
    assert!(repo.unfinished_operations().await.unwrap().is_empty());

    // A delete of it ends by removing the row; the lock is free for the next save.
    let delete = new_operation(&failed_state, OperationKind::Delete);
    repo.begin_state_operation(
        &delete,
        &[StateStatus::Available, StateStatus::Error],
        StateStatus::Deleting,
    )
    .await
    .unwrap();
    repo.finish_operation(&ended(&delete, OperationStatus::Succeeded), None)
        .await
        .unwrap();
    assert_eq!(repo.get_state(state.uuid).await.unwrap(), None);
    assert_eq!(repo.count_states(instance).await.unwrap(), 0);
    assert_eq!(
        repo.get_operation(delete.uuid)
            .await
            .unwrap()
            .unwrap()
            .status,
        OperationStatus::Succeeded
    );
    available(&repo, instance, "next").await;

    // Ending an operation that was never begun.
    let stray = ended(
        &new_operation(&failed_state, OperationKind::Apply),
        OperationStatus::Succeeded,
    );
    assert!(matches!(
        repo.finish_operation(&stray, None).await,
        Err(RepoError::NotFound)
    ));
}

async fn finish_is_idempotent_and_never_clobbers_a_newer_operation(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    let state = new_state(instance, "tenant-a", "s", now());
    let save = new_operation(&state, OperationKind::Save);
    repo.begin_save(&state, &save).await.unwrap();
    let done = ended(&save, OperationStatus::Succeeded);
    let kept = snapgate_core::State {
        status: StateStatus::Available,
        size_bytes: Some(42),
        ..state.clone()
    };
    repo.finish_operation(&done, Some(&kept)).await.unwrap();
    // A retry of the same call changes nothing and succeeds.
    repo.finish_operation(&done, Some(&kept)).await.unwrap();
    assert_eq!(
        repo.get_state(state.uuid).await.unwrap(),
        Some(kept.clone())
    );
    assert_eq!(
        repo.get_operation(save.uuid).await.unwrap(),
        Some(done.clone())
    );

    // A delete starts; a late, different end of the old save must not undo it.
    let delete = new_operation(&kept, OperationKind::Delete);
    repo.begin_state_operation(&delete, &[StateStatus::Available], StateStatus::Deleting)
        .await
        .unwrap();
    let late = snapgate_core::Operation {
        status: OperationStatus::Failed,
        ..done.clone()
    };
    repo.finish_operation(&late, Some(&kept)).await.unwrap();
    assert_eq!(
        repo.get_state(state.uuid).await.unwrap().unwrap().status,
        StateStatus::Deleting
    );
    assert_eq!(repo.get_operation(save.uuid).await.unwrap(), Some(done));
    // …nor free the lock the delete holds.
    let next = new_state(instance, "tenant-a", "t", now());
    let err = repo
        .begin_save(&next, &new_operation(&next, OperationKind::Save))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::InstanceBusy(holder) if holder == delete.uuid),
        "{err:?}"
    );
}

async fn running_and_heartbeat_update_only_unfinished_operations(repo: Arc<SeaRepository>) {
    let instance = Uuid::new_v4();
    let state = new_state(instance, "tenant-a", "s", now());
    let save = new_operation(&state, OperationKind::Save);
    repo.begin_save(&state, &save).await.unwrap();

    let started = now();
    repo.mark_running(save.uuid, 0, started).await.unwrap();
    let op = repo.get_operation(save.uuid).await.unwrap().unwrap();
    assert_eq!(
        (op.status, op.started_at, op.updated_at),
        (OperationStatus::Running, Some(started), started)
    );

    // Marking it running again keeps the first start.
    repo.mark_running(save.uuid, 0, started + chrono::Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(
        repo.get_operation(save.uuid)
            .await
            .unwrap()
            .unwrap()
            .started_at,
        Some(started)
    );

    let beat = started + chrono::Duration::seconds(30);
    repo.touch_operation(save.uuid, 0, beat).await.unwrap();
    let op = repo.get_operation(save.uuid).await.unwrap().unwrap();
    assert_eq!(
        (op.status, op.started_at, op.updated_at),
        (OperationStatus::Running, Some(started), beat)
    );

    // After the end the lease is over: a late heartbeat or start is refused and leaves the
    // end time alone.
    let done = ended(&op, OperationStatus::Succeeded);
    repo.finish_operation(&done, Some(&state)).await.unwrap();
    assert!(matches!(
        repo.touch_operation(save.uuid, 0, beat + chrono::Duration::seconds(30))
            .await,
        Err(RepoError::Fenced(id)) if id == save.uuid
    ));
    assert!(matches!(
        repo.mark_running(save.uuid, 0, beat).await,
        Err(RepoError::Fenced(id)) if id == save.uuid
    ));
    assert_eq!(repo.get_operation(save.uuid).await.unwrap(), Some(done));

    assert!(matches!(
        repo.mark_running(Uuid::new_v4(), 0, now()).await,
        Err(RepoError::NotFound)
    ));
    assert!(matches!(
        repo.touch_operation(Uuid::new_v4(), 0, now()).await,
        Err(RepoError::NotFound)
    ));
}
