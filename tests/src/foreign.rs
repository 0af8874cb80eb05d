//! Work of another gateway replica, written straight into the shared database: what a test
//! needs to find an instance busy without timing a real save.

use chrono::Utc;
use snapgate_core::ports::Repository;
use snapgate_core::{Operation, OperationKind, OperationStatus, SnapshotKind, State, StateStatus};
use snapgate_store::SeaRepository;
use uuid::Uuid;

use crate::app::demo;

/// What another gateway replica leaves in the database while it saves on `instance`: a
/// running save holding the instance's lock.
pub async fn foreign_running_save(repo: &SeaRepository, instance: &str) -> (State, Operation) {
    let now = Utc::now();
    let state = State {
        uuid: Uuid::now_v7(),
        name: format!("in progress {}", Uuid::new_v4()),
        date: now,
        instance_uuid: instance.parse().unwrap(),
        tenant_id: demo::TENANT.into(),
        status: StateStatus::Saving,
        description: None,
        host: "demo".into(),
        size_bytes: None,
        memory_bytes: None,
        includes_memory: true,
        disk_formats: vec!["qcow2".into()],
        cpu: None,
        snapshot_kind: SnapshotKind::Internal,
        parent: None,
        error: None,
        updated_at: now,
        cpu_xml: None,
        snapshot_xml: None,
        expires_at: None,
        schedule_id: None,
    };
    let op = Operation {
        uuid: Uuid::now_v7(),
        kind: OperationKind::Save,
        status: OperationStatus::Running,
        instance_uuid: state.instance_uuid,
        state_uuid: state.uuid,
        tenant_id: demo::TENANT.into(),
        host: "demo".into(),
        error: None,
        created_at: now,
        updated_at: now,
        started_at: Some(now),
        finished_at: None,
        reserved_bytes: 0,
        lease_epoch: 0,
        lease_owner: None,
        progress: None,
        may_cancel: false,
        cancel_requested_at: None,
    };
    repo.begin_save(&state, &op).await.unwrap();
    (state, op)
}

/// Ends the foreign save (failed, so it keeps no quota), freeing the instance.
pub async fn end_foreign_save(repo: &SeaRepository, (mut state, mut op): (State, Operation)) {
    op.status = OperationStatus::Failed;
    op.finished_at = Some(Utc::now());
    state.status = StateStatus::Error;
    repo.finish_operation(&op, Some(&state)).await.unwrap();
}
