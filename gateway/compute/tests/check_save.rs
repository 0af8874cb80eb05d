//! `check_save`: the stable refusal codes, on domains described by the test driver.

mod common;

use common::*;
use snapgate_core::ports::{ComputeBackend, ComputeError};
use snapgate_core::SnapshotKind;
use uuid::Uuid;

async fn refusal(instance: Uuid, kind: SnapshotKind) -> Option<(&'static str, String)> {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let inst = backend.locate(instance).await.unwrap();
    match backend.check_save(&inst, kind).await {
        Ok(()) => None,
        Err(ComputeError::Unsupported { code, message }) => Some((code, message)),
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test]
async fn running_qcow2_domain_passes_both_kinds() {
    assert_eq!(refusal(DEMO_WEB, SnapshotKind::Internal).await, None);
    assert_eq!(refusal(DEMO_WEB, SnapshotKind::External).await, None);
    assert_eq!(refusal(NOVA_APP, SnapshotKind::Internal).await, None);
}

#[tokio::test]
async fn shut_off_domain_is_instance_not_running() {
    let (code, _) = refusal(STOPPED_VM, SnapshotKind::Internal).await.unwrap();
    assert_eq!(code, "instance_not_running");
    let (code, _) = refusal(STOPPED_VM, SnapshotKind::External).await.unwrap();
    assert_eq!(code, "instance_not_running");
}

#[tokio::test]
async fn raw_disk_is_refused_for_internal_only() {
    let (code, message) = refusal(RAW_DISK, SnapshotKind::Internal).await.unwrap();
    assert_eq!(code, "unsupported_disk_format");
    assert!(message.contains("vda (raw)"), "{message}");
    assert_eq!(refusal(RAW_DISK, SnapshotKind::External).await, None);
}

#[tokio::test]
async fn disk_without_format_is_refused_for_internal() {
    let (code, message) = refusal(TEST_DOMAIN, SnapshotKind::Internal).await.unwrap();
    assert_eq!(code, "unsupported_disk_format");
    assert!(message.contains("vda (no format)"), "{message}");
}

#[tokio::test]
async fn host_devices_are_refused() {
    let (code, _) = refusal(GPU_VM, SnapshotKind::Internal).await.unwrap();
    assert_eq!(code, "host_devices_attached");
    let (code, _) = refusal(GPU_VM, SnapshotKind::External).await.unwrap();
    assert_eq!(code, "host_devices_attached");
}

#[tokio::test]
async fn mixing_internal_and_external_snapshots_is_refused_before_any_work() {
    use snapgate_core::ports::SaveRequest;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let req = SaveRequest {
        instance: DEMO_DB,
        snapshot_name: Uuid::new_v4().to_string(),
        kind: SnapshotKind::External,
    };
    backend.save(DEMO_HOST, req).await.unwrap();

    let inst = backend.locate(DEMO_DB).await.unwrap();
    backend
        .check_save(&inst, SnapshotKind::External)
        .await
        .unwrap();
    match backend.check_save(&inst, SnapshotKind::Internal).await {
        Err(ComputeError::Unsupported { code, message }) => {
            assert_eq!(code, "snapshot_kind_conflict");
            assert!(message.contains("external"), "{message}");
        }
        other => panic!("expected snapshot_kind_conflict, got {other:?}"),
    }
    // `save` refuses too, for callers that skip the check.
    let req = SaveRequest {
        instance: DEMO_DB,
        snapshot_name: Uuid::new_v4().to_string(),
        kind: SnapshotKind::Internal,
    };
    assert!(matches!(
        backend.save(DEMO_HOST, req).await,
        Err(ComputeError::Unsupported {
            code: "snapshot_kind_conflict",
            ..
        })
    ));
    assert_eq!(
        backend
            .list_snapshots(DEMO_HOST, DEMO_DB)
            .await
            .unwrap()
            .len(),
        1
    );
}
