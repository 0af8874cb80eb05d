//! save → probe → list → apply → delete, internal and external, on the test driver.
//!
//! What the test driver does (libvirt 11.3, checked): it accepts internal and external
//! snapshots with memory, including external ones with LIVE|ATOMIC, keeps the parent chain and
//! the current snapshot, reverts and deletes both kinds, but writes no file (no memory file,
//! no overlay) and reports fixed block sizes.

mod common;

use common::*;
use snapgate_core::ports::{ComputeBackend, ComputeError, SaveRequest, SnapshotProbe};
use snapgate_core::SnapshotKind;
use uuid::Uuid;

fn request(instance: Uuid, kind: SnapshotKind) -> SaveRequest {
    SaveRequest {
        instance,
        snapshot_name: Uuid::new_v4().to_string(),
        kind,
    }
}

#[tokio::test]
async fn internal_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let req = request(DEMO_WEB, SnapshotKind::Internal);
    let name = req.snapshot_name.clone();

    let saved = backend.save(DEMO_HOST, req).await.unwrap();
    assert_eq!(saved.kind, SnapshotKind::Internal);
    assert_eq!(saved.memory_bytes, 512 * 1024 * 1024);
    assert!(saved.size_bytes >= saved.memory_bytes);
    assert_eq!(saved.disk_formats, vec!["qcow2".to_owned()]);
    assert_eq!(saved.cpu.model.as_deref(), Some("Haswell"));
    assert!(saved.cpu_xml.as_deref().is_some_and(|x| x.contains("avx2")));
    assert_eq!(saved.parent, None);

    assert_eq!(
        backend.probe(DEMO_HOST, DEMO_WEB, &name).await.unwrap(),
        SnapshotProbe::Present
    );
    assert_eq!(
        backend.list_snapshots(DEMO_HOST, DEMO_WEB).await.unwrap(),
        vec![name.clone()]
    );
    assert_eq!(
        backend
            .locate(DEMO_WEB)
            .await
            .unwrap()
            .current_snapshot
            .as_deref(),
        Some(name.as_str())
    );

    backend.apply(DEMO_HOST, DEMO_WEB, &name).await.unwrap();
    assert!(
        backend.locate(DEMO_WEB).await.unwrap().running,
        "apply leaves the domain running"
    );

    backend.delete(DEMO_HOST, DEMO_WEB, &name).await.unwrap();
    assert_eq!(
        backend.probe(DEMO_HOST, DEMO_WEB, &name).await.unwrap(),
        SnapshotProbe::Absent
    );
    assert!(backend
        .list_snapshots(DEMO_HOST, DEMO_WEB)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn second_save_names_the_first_as_parent() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let first = request(NOVA_APP, SnapshotKind::Internal);
    let first_name = first.snapshot_name.clone();
    backend.save(DEMO_HOST, first).await.unwrap();
    let second = backend
        .save(DEMO_HOST, request(NOVA_APP, SnapshotKind::Internal))
        .await
        .unwrap();
    assert_eq!(second.parent.as_deref(), Some(first_name.as_str()));
}

#[tokio::test]
async fn external_round_trip_touches_no_local_file() {
    let dir = tempfile::tempdir().unwrap();
    // A directory of the *host*: the gateway must not make it (libvirt's pool does, on the
    // host; the test driver keeps it in memory).
    let state_dir = dir.path().join("host-only");
    let backend = backend(&state_dir);
    let req = request(DEMO_DB, SnapshotKind::External);
    let name = req.snapshot_name.clone();

    let saved = backend.save(DEMO_HOST, req).await.unwrap();
    assert_eq!(saved.kind, SnapshotKind::External);
    // The test driver writes no memory file: the guest's memory stands in for it.
    assert_eq!(saved.memory_bytes, 1024 * 1024 * 1024);
    assert_eq!(
        saved.disk_formats,
        vec!["qcow2".to_owned(), "qcow2".to_owned()]
    );
    let xml = saved
        .snapshot_xml
        .expect("the snapshot's XML is handed back");
    let memory_file = state_dir.join(format!("{name}.memory"));
    assert!(
        xml.contains(&format!("file='{}'", memory_file.display())),
        "flat layout in the host's state directory: {xml}"
    );
    assert!(
        xml.contains(&format!("{name}.vdb.qcow2")),
        "one overlay per disk: {xml}"
    );
    assert_eq!(
        backend.probe(DEMO_HOST, DEMO_DB, &name).await.unwrap(),
        SnapshotProbe::Present
    );
    backend.apply(DEMO_HOST, DEMO_DB, &name).await.unwrap();
    backend.delete(DEMO_HOST, DEMO_DB, &name).await.unwrap();
    assert_eq!(
        backend.probe(DEMO_HOST, DEMO_DB, &name).await.unwrap(),
        SnapshotProbe::Absent
    );
    assert!(
        !state_dir.exists(),
        "the gateway made no directory or file of its own"
    );
}

/// A test-driver host whose state directory is a storage pool holding the files QEMU would
/// have written for snapshot `name` (sizes chosen by the test), plus one of another state.
/// The directory does not exist on this machine: only libvirt knows the files.
fn host_with_state_files(dir: &std::path::Path, state_dir: &str, name: &str) -> String {
    let volume = |file: &str, capacity: u64, allocation: u64| {
        format!(
            "<volume type='file'><name>{file}</name><capacity unit='bytes'>{capacity}</capacity>\
             <allocation unit='bytes'>{allocation}</allocation><target><path>{state_dir}/{file}</path></target></volume>"
        )
    };
    let pool = format!(
        "<pool type='dir'><name>states</name><target><path>{state_dir}</path></target>{}{}{}{}</pool>",
        volume(&format!("{name}.memory"), 4096, 8192),
        volume(&format!("{name}.vda.qcow2"), 1 << 30, 1024),
        volume(&format!("{name}.vda.qcow2.1700000000"), 1 << 30, 512),
        volume("neighbour.memory", 2048, 4096),
    );
    let demo = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/demo-node.xml"),
    )
    .unwrap();
    let path = dir.join("node.xml");
    std::fs::write(&path, demo.replace("</node>", &format!("{pool}</node>"))).unwrap();
    format!("test://{}", path.display())
}

#[tokio::test]
async fn state_files_are_measured_and_removed_through_the_hosts_storage_pool() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = format!("/nonexistent-{}/states", Uuid::new_v4().simple());
    let name = Uuid::new_v4().to_string();
    let uri = host_with_state_files(dir.path(), &state_dir, &name);
    let backend = snapgate_compute::LibvirtBackend::new(
        vec![snapgate_compute::HostConfig::new(DEMO_HOST, uri).with_state_dir(&state_dir)],
        options(),
    );
    let save = |snapshot_name: &str| SaveRequest {
        instance: RAW_DISK,
        snapshot_name: snapshot_name.to_owned(),
        kind: SnapshotKind::External,
    };

    // Memory: the memory file's length; disks: what the overlay takes on the host's disk.
    let saved = backend.save(DEMO_HOST, save(&name)).await.unwrap();
    assert_eq!(saved.memory_bytes, 4096);
    assert_eq!(saved.size_bytes, 4096 + 1024);
    assert_eq!(saved.disk_formats, vec!["raw".to_owned()]);

    // The delete removes what the snapshot left in the pool (here: everything, as the test
    // driver's snapshot delete removes no file), and nothing of other states.
    backend.delete(DEMO_HOST, RAW_DISK, &name).await.unwrap();
    let again = backend.save(DEMO_HOST, save(&name)).await.unwrap();
    assert_eq!(
        again.memory_bytes,
        256 << 20,
        "the files are gone: the guest's memory stands in again"
    );
    backend.delete(DEMO_HOST, RAW_DISK, &name).await.unwrap();
    let neighbour = backend.save(DEMO_HOST, save("neighbour")).await.unwrap();
    assert_eq!(neighbour.memory_bytes, 2048, "another state's file is kept");
    assert!(!std::path::Path::new(&state_dir).exists());
}

#[tokio::test]
async fn missing_snapshot_is_snapshot_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let name = Uuid::new_v4().to_string();
    assert_eq!(
        backend.probe(DEMO_HOST, DEMO_WEB, &name).await.unwrap(),
        SnapshotProbe::Absent
    );
    match backend.apply(DEMO_HOST, DEMO_WEB, &name).await {
        Err(ComputeError::SnapshotNotFound(n)) => assert_eq!(n, name),
        other => panic!("expected SnapshotNotFound, got {other:?}"),
    }
    match backend.delete(DEMO_HOST, DEMO_WEB, &name).await {
        Err(ComputeError::SnapshotNotFound(n)) => assert_eq!(n, name),
        other => panic!("expected SnapshotNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_host_or_instance_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let missing = Uuid::new_v4();
    assert!(matches!(
        backend.save(DEMO_HOST, request(missing, SnapshotKind::Internal)).await,
        Err(ComputeError::InstanceNotFound(id)) if id == missing
    ));
    assert!(matches!(
        backend.list_snapshots(DEFAULT_HOST, DEMO_WEB).await,
        Err(ComputeError::InstanceNotFound(_))
    ));
    assert!(matches!(
        backend.save("nowhere", request(DEMO_WEB, SnapshotKind::Internal)).await,
        Err(ComputeError::UnknownHost(h)) if h == "nowhere"
    ));
}

#[tokio::test]
async fn duplicate_snapshot_name_is_a_backend_error_with_libvirt_text() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let req = request(DEMO_WEB, SnapshotKind::Internal);
    backend.save(DEMO_HOST, req.clone()).await.unwrap();
    match backend.save(DEMO_HOST, req).await {
        Err(ComputeError::Backend { host, message }) => {
            assert_eq!(host, DEMO_HOST);
            assert!(message.contains("already exists"), "{message}");
        }
        other => panic!("expected Backend, got {other:?}"),
    }
}

#[tokio::test]
async fn a_name_that_is_not_plain_never_reaches_libvirt_or_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let mut req = request(DEMO_WEB, SnapshotKind::External);
    req.snapshot_name = "../escape".into();
    assert!(matches!(
        backend.save(DEMO_HOST, req).await,
        Err(ComputeError::Unsupported {
            code: "invalid_snapshot_name",
            ..
        })
    ));
    assert!(backend
        .list_snapshots(DEMO_HOST, DEMO_WEB)
        .await
        .unwrap()
        .is_empty());
}
