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
        state_dir: None,
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
async fn external_round_trip_cleans_its_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let req = request(DEMO_DB, SnapshotKind::External);
    let name = req.snapshot_name.clone();

    let saved = backend.save(DEMO_HOST, req).await.unwrap();
    assert_eq!(saved.kind, SnapshotKind::External);
    // The test driver writes no memory file: the guest's memory stands in for it.
    assert_eq!(saved.memory_bytes, 1024 * 1024 * 1024);
    assert_eq!(saved.size_bytes, saved.memory_bytes);
    assert_eq!(
        saved.disk_formats,
        vec!["qcow2".to_owned(), "qcow2".to_owned()]
    );

    let state_dir = dir.path().join(&name);
    assert!(
        state_dir.is_dir(),
        "the per-state directory is made before the save"
    );
    assert_eq!(
        backend.probe(DEMO_HOST, DEMO_DB, &name).await.unwrap(),
        SnapshotProbe::Present
    );
    backend.apply(DEMO_HOST, DEMO_DB, &name).await.unwrap();

    // What QEMU would have written, and a leftover overlay of a revert.
    for file in [
        "memory.save",
        "vda.qcow2",
        "vdb.qcow2",
        "vda.qcow2.1700000000",
    ] {
        std::fs::write(state_dir.join(file), b"x").unwrap();
    }
    backend.delete(DEMO_HOST, DEMO_DB, &name).await.unwrap();
    assert!(
        !state_dir.exists(),
        "the per-state directory and its files are removed"
    );
    assert_eq!(
        backend.probe(DEMO_HOST, DEMO_DB, &name).await.unwrap(),
        SnapshotProbe::Absent
    );
}

#[tokio::test]
async fn external_save_measures_the_memory_file_and_overlays_it_finds() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let req = request(RAW_DISK, SnapshotKind::External);
    let name = req.snapshot_name.clone();
    // Files as QEMU would leave them; the test driver itself writes none.
    let state_dir = dir.path().join(&name);
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::write(state_dir.join("memory.save"), vec![0u8; 4096]).unwrap();
    std::fs::write(state_dir.join("vda.qcow2"), vec![0u8; 1024]).unwrap();

    let saved = backend.save(DEMO_HOST, req).await.unwrap();
    assert_eq!(saved.memory_bytes, 4096);
    assert_eq!(saved.size_bytes, 4096 + 1024);
    assert_eq!(saved.disk_formats, vec!["raw".to_owned()]);
}

#[tokio::test]
async fn external_save_honours_the_request_state_dir() {
    let default_dir = tempfile::tempdir().unwrap();
    let request_dir = tempfile::tempdir().unwrap();
    let backend = backend(default_dir.path());
    let mut req = request(DEMO_WEB, SnapshotKind::External);
    req.state_dir = Some(request_dir.path().to_path_buf());
    let name = req.snapshot_name.clone();
    backend.save(DEMO_HOST, req).await.unwrap();
    assert!(request_dir.path().join(&name).is_dir());
    assert!(!default_dir.path().join(&name).exists());
    backend.delete(DEMO_HOST, DEMO_WEB, &name).await.unwrap();
    assert!(!request_dir.path().join(&name).exists());
}

#[tokio::test]
async fn delete_keeps_files_outside_its_own_directory() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let req = request(DEMO_WEB, SnapshotKind::External);
    let name = req.snapshot_name.clone();
    backend.save(DEMO_HOST, req).await.unwrap();
    let neighbour = dir.path().join("not-ours.txt");
    std::fs::write(&neighbour, b"keep").unwrap();
    backend.delete(DEMO_HOST, DEMO_WEB, &name).await.unwrap();
    assert!(neighbour.exists());
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
