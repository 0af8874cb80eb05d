//! Host CPU, CPU comparison, ping, reconnects, unreachable hosts and concurrency.

mod common;

use std::time::Duration;

use common::*;
use snapgate_compute::{HostConfig, LibvirtBackend};
use snapgate_core::ports::{ComputeBackend, ComputeError, SaveRequest};
use snapgate_core::{CpuCompatibility, SnapshotKind};
use uuid::Uuid;

/// Nothing listens on port 1, so the remote driver fails at once with a connection error.
const DEAD_URI: &str = "qemu+tcp://127.0.0.1:1/system";

#[tokio::test]
async fn host_cpu_reads_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let cpu = backend.host_cpu(DEMO_HOST).await.unwrap();
    // The test driver's capabilities show an i686 host CPU with no model and two features.
    assert!(cpu.features.contains(&"pae".to_owned()), "{cpu:?}");
}

#[tokio::test]
async fn compare_cpu_gives_a_value_even_where_the_driver_cannot_compare() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let web = backend.locate(DEMO_WEB).await.unwrap();
    let verdict = backend
        .compare_cpu(DEMO_HOST, DEMO_WEB, web.cpu_xml.as_deref().unwrap())
        .await
        .unwrap();
    // libvirt's test driver does not implement virConnectCompareHypervisorCPU.
    assert_eq!(verdict, CpuCompatibility::Unknown);
    assert_eq!(
        backend
            .compare_cpu(DEMO_HOST, DEMO_WEB, "not xml <")
            .await
            .unwrap(),
        CpuCompatibility::Unknown
    );
    assert_eq!(
        backend
            .compare_cpu(DEMO_HOST, DEMO_WEB, "a\0b")
            .await
            .unwrap(),
        CpuCompatibility::Unknown
    );
}

#[tokio::test]
async fn compare_cpu_for_a_missing_instance_is_instance_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let missing = Uuid::new_v4();
    let cpu_xml = "<cpu mode='custom'><model>qemu64</model></cpu>";
    assert!(matches!(
        backend.compare_cpu(DEMO_HOST, missing, cpu_xml).await,
        Err(ComputeError::InstanceNotFound(id)) if id == missing
    ));
}

#[tokio::test]
async fn ping_reconnects_after_the_connection_was_closed() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    backend.ping(DEFAULT_HOST).await.unwrap();
    let req = SaveRequest {
        instance: TEST_DOMAIN,
        snapshot_name: Uuid::new_v4().to_string(),
        kind: SnapshotKind::Internal,
    };
    backend.save(DEFAULT_HOST, req).await.unwrap();
    assert_eq!(
        backend
            .list_snapshots(DEFAULT_HOST, TEST_DOMAIN)
            .await
            .unwrap()
            .len(),
        1
    );

    // The kept connection is reused: state survives between calls.
    backend.ping(DEFAULT_HOST).await.unwrap();
    assert_eq!(
        backend
            .list_snapshots(DEFAULT_HOST, TEST_DOMAIN)
            .await
            .unwrap()
            .len(),
        1
    );

    backend.force_disconnect(DEFAULT_HOST);
    backend.ping(DEFAULT_HOST).await.unwrap();
    // A new test-driver connection starts from a fresh copy of the driver state, which proves
    // the backend reconnected rather than kept using the closed connection.
    assert!(backend
        .list_snapshots(DEFAULT_HOST, TEST_DOMAIN)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(backend.locate(TEST_DOMAIN).await.unwrap().name, "test");
}

#[tokio::test]
async fn every_call_reconnects_after_a_forced_disconnect() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    backend.locate(DEMO_WEB).await.unwrap();
    backend.force_disconnect(DEMO_HOST);
    assert!(backend
        .list_snapshots(DEMO_HOST, DEMO_WEB)
        .await
        .unwrap()
        .is_empty());
    backend.force_disconnect(DEMO_HOST);
    backend.host_cpu(DEMO_HOST).await.unwrap();
    backend.force_disconnect(DEMO_HOST);
    let req = SaveRequest {
        instance: DEMO_WEB,
        snapshot_name: Uuid::new_v4().to_string(),
        kind: SnapshotKind::Internal,
    };
    backend.save(DEMO_HOST, req).await.unwrap();
}

#[tokio::test]
async fn unreachable_host_is_host_unreachable() {
    let backend = LibvirtBackend::new(vec![HostConfig::new("dead", DEAD_URI)], options());
    match backend.ping("dead").await {
        Err(e @ ComputeError::HostUnreachable { .. }) => {
            assert_eq!(e.code(), "compute_unavailable")
        }
        other => panic!("expected HostUnreachable, got {other:?}"),
    }
    assert!(matches!(
        backend.host_cpu("dead").await,
        Err(ComputeError::HostUnreachable { .. })
    ));
    // A host that cannot be asked is an error, not an `Unknown` verdict.
    assert!(matches!(
        backend
            .compare_cpu("dead", DEMO_WEB, "<cpu><model>qemu64</model></cpu>")
            .await,
        Err(ComputeError::HostUnreachable { .. })
    ));
}

#[tokio::test]
async fn locate_skips_an_unreachable_host_but_does_not_claim_not_found() {
    let backend = LibvirtBackend::new(
        vec![
            HostConfig::new("dead", DEAD_URI),
            HostConfig::new(DEMO_HOST, demo_node_uri()),
        ],
        options(),
    );
    assert_eq!(backend.locate(DEMO_WEB).await.unwrap().host, DEMO_HOST);
    // Missing everywhere reachable, but the dead host might have it.
    assert!(
        matches!(backend.locate(Uuid::new_v4()).await, Err(ComputeError::HostUnreachable { host, .. }) if host == "dead")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parallel_calls_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let backend = std::sync::Arc::new(backend(dir.path()));
    let mut tasks = Vec::new();
    for i in 0..96u32 {
        let backend = backend.clone();
        tasks.push(tokio::spawn(async move {
            match i % 6 {
                0 => backend.locate(DEMO_WEB).await.map(|_| ()),
                1 => backend.locate(TEST_DOMAIN).await.map(|_| ()),
                2 => backend.ping(DEMO_HOST).await,
                3 => backend.list_snapshots(DEMO_HOST, DEMO_DB).await.map(|_| ()),
                4 => {
                    let req = SaveRequest {
                        instance: NOVA_APP,
                        snapshot_name: Uuid::new_v4().to_string(),
                        kind: SnapshotKind::Internal,
                    };
                    backend.save(DEMO_HOST, req).await.map(|_| ())
                }
                _ => backend.host_cpu(DEFAULT_HOST).await.map(|_| ()),
            }
        }));
    }
    let all = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(tasks))
        .await
        .expect("parallel libvirt calls finished within a minute");
    for result in all {
        result.expect("task did not panic").expect("call succeeded");
    }
    assert_eq!(
        backend
            .list_snapshots(DEMO_HOST, NOVA_APP)
            .await
            .unwrap()
            .len(),
        16
    );
}
