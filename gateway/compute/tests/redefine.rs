//! A snapshot follows its instance to another host: its saved XML defines it again there
//! (`VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE`). Two test-driver hosts with the same domain stand
//! for an instance defined on a new host with the same disks.

mod common;

use common::*;
use snapgate_compute::{HostConfig, LibvirtBackend};
use snapgate_core::ports::{ComputeBackend, ComputeError, SaveRequest, SnapshotProbe};
use snapgate_core::SnapshotKind;
use uuid::Uuid;

const OLD: &str = "old";
const NEW: &str = "new";

fn two_hosts(state_dir: &std::path::Path) -> LibvirtBackend {
    LibvirtBackend::new(
        vec![
            HostConfig::new(OLD, demo_node_uri()).with_state_dir(state_dir),
            HostConfig::new(NEW, demo_node_uri()).with_state_dir(state_dir),
        ],
        options(),
    )
}

async fn save_internal(backend: &LibvirtBackend, host: &str) -> (String, String) {
    let name = Uuid::new_v4().to_string();
    let saved = backend
        .save(
            host,
            SaveRequest {
                instance: DEMO_WEB,
                snapshot_name: name.clone(),
                kind: SnapshotKind::Internal,
            },
        )
        .await
        .unwrap();
    (name, saved.snapshot_xml.expect("snapshot XML"))
}

#[tokio::test]
async fn an_internal_snapshot_is_defined_again_on_the_new_host_and_applies() {
    let dir = tempfile::tempdir().unwrap();
    let backend = two_hosts(dir.path());
    // A parent and a child on the old host; the new host has neither.
    let (_parent, _) = save_internal(&backend, OLD).await;
    let (child, child_xml) = save_internal(&backend, OLD).await;
    assert!(child_xml.contains("<parent>"), "{child_xml}");

    assert!(matches!(
        backend.apply(NEW, DEMO_WEB, &child).await,
        Err(ComputeError::SnapshotNotFound(_))
    ));
    // The parent is missing there: the child is defined as a root.
    backend
        .redefine_snapshot(NEW, DEMO_WEB, &child_xml)
        .await
        .unwrap();
    assert_eq!(
        backend.probe(NEW, DEMO_WEB, &child).await.unwrap(),
        SnapshotProbe::Present
    );
    backend.apply(NEW, DEMO_WEB, &child).await.unwrap();
    backend.delete(NEW, DEMO_WEB, &child).await.unwrap();
    assert_eq!(
        backend.probe(NEW, DEMO_WEB, &child).await.unwrap(),
        SnapshotProbe::Absent
    );
}

#[tokio::test]
async fn a_parent_the_new_host_has_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let backend = two_hosts(dir.path());
    let (parent, parent_xml) = save_internal(&backend, OLD).await;
    let (child, child_xml) = save_internal(&backend, OLD).await;
    backend
        .redefine_snapshot(NEW, DEMO_WEB, &parent_xml)
        .await
        .unwrap();
    backend
        .redefine_snapshot(NEW, DEMO_WEB, &child_xml)
        .await
        .unwrap();
    let names = backend.list_snapshots(NEW, DEMO_WEB).await.unwrap();
    assert_eq!(names.len(), 2, "{names:?}");
    // The chain is whole: saving on the new host now names the child as parent only if it is
    // current, so ask libvirt through a save of its own after applying the child.
    backend.apply(NEW, DEMO_WEB, &child).await.unwrap();
    let next = backend
        .save(
            NEW,
            SaveRequest {
                instance: DEMO_WEB,
                snapshot_name: Uuid::new_v4().to_string(),
                kind: SnapshotKind::Internal,
            },
        )
        .await
        .unwrap();
    assert_eq!(next.parent.as_deref(), Some(child.as_str()));
    assert!(names.contains(&parent));
}

#[tokio::test]
async fn redefining_for_a_missing_instance_is_instance_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let backend = two_hosts(dir.path());
    let (_, xml) = save_internal(&backend, OLD).await;
    let missing = Uuid::new_v4();
    assert!(matches!(
        backend.redefine_snapshot(NEW, missing, &xml).await,
        Err(ComputeError::InstanceNotFound(id)) if id == missing
    ));
}
