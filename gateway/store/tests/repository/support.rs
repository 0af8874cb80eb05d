//! Builders for records and the runner that gives each test a fresh database.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use snapgate_core::ports::Repository;
use snapgate_core::{
    CpuInfo, Operation, OperationKind, OperationStatus, SnapshotKind, State, StateStatus,
};
use snapgate_store::testing::{TestBackend, TestStore};
use snapgate_store::SeaRepository;
use uuid::Uuid;

pub async fn run<F, Fut>(backend: TestBackend, test: F)
where
    F: FnOnce(Arc<SeaRepository>) -> Fut,
    Fut: Future<Output = ()>,
{
    let store = TestStore::new(backend)
        .await
        .unwrap_or_else(|e| panic!("cannot create a {backend:?} test database: {e}"));
    let repo = Arc::new(store.repository().await.expect("connect and migrate"));
    test(Arc::clone(&repo)).await;
    repo.close().await;
    store.cleanup().await.expect("drop the test database");
}

/// Now, at the precision the store keeps.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub fn new_state(instance: Uuid, tenant: &str, name: &str, date: DateTime<Utc>) -> State {
    State {
        uuid: Uuid::now_v7(),
        name: name.to_owned(),
        date,
        instance_uuid: instance,
        tenant_id: tenant.to_owned(),
        status: StateStatus::Saving,
        description: Some(format!("state {name}")),
        host: "host-a".to_owned(),
        size_bytes: None,
        memory_bytes: Some(128 << 20),
        includes_memory: true,
        disk_formats: vec!["qcow2".to_owned()],
        cpu: Some(CpuInfo {
            model: Some("Skylake-Client".to_owned()),
            vendor: Some("Intel".to_owned()),
            features: vec!["avx2".to_owned(), "vmx".to_owned()],
        }),
        snapshot_kind: SnapshotKind::Internal,
        parent: None,
        error: None,
        updated_at: date,
        cpu_xml: Some("<cpu mode='custom'><model>Skylake-Client</model></cpu>".to_owned()),
        snapshot_xml: Some("<domainsnapshot><name>s</name></domainsnapshot>".to_owned()),
        expires_at: None,
        schedule_id: None,
    }
}

pub fn new_operation(state: &State, kind: OperationKind) -> Operation {
    let at = now();
    Operation {
        uuid: Uuid::now_v7(),
        kind,
        status: OperationStatus::Pending,
        instance_uuid: state.instance_uuid,
        state_uuid: state.uuid,
        tenant_id: state.tenant_id.clone(),
        host: state.host.clone(),
        error: None,
        created_at: at,
        updated_at: at,
        started_at: None,
        finished_at: None,
        reserved_bytes: if kind == OperationKind::Save {
            1 << 30
        } else {
            0
        },
        lease_epoch: 0,
        lease_owner: Some("gateway-a".to_owned()),
        progress: None,
        may_cancel: false,
        cancel_requested_at: None,
    }
    .with_may_cancel()
}

/// The operation as its runner ends it.
pub fn ended(op: &Operation, status: OperationStatus) -> Operation {
    let at = now();
    Operation {
        status,
        updated_at: at,
        finished_at: Some(at),
        ..op.clone()
    }
    .with_may_cancel()
}

/// Records `state` through a whole save (begin, then finish writing the state as given), so
/// it ends in `state.status` with the instance unlocked. Returns the save operation.
pub async fn put_state(repo: &SeaRepository, state: &State) -> Operation {
    let saving = State {
        status: StateStatus::Saving,
        ..state.clone()
    };
    let op = new_operation(&saving, OperationKind::Save);
    repo.begin_save(&saving, &op).await.expect("begin_save");
    let done = ended(&op, OperationStatus::Succeeded);
    repo.finish_operation(&done, Some(state))
        .await
        .expect("finish_operation");
    done
}

/// An available state of `instance`, recorded.
pub async fn available(repo: &SeaRepository, instance: Uuid, name: &str) -> State {
    let state = State {
        status: StateStatus::Available,
        size_bytes: Some(1000),
        ..new_state(instance, "tenant-a", name, now())
    };
    put_state(repo, &state).await;
    state
}
