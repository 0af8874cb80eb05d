//! `locate`: finding domains across hosts and reading their XML into `Instance`.

mod common;

use common::*;
use snapgate_core::ports::{ComputeBackend, ComputeError};
use uuid::Uuid;

#[tokio::test]
async fn finds_the_builtin_test_domain_on_the_first_host() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let inst = backend.locate(TEST_DOMAIN).await.unwrap();
    assert_eq!(inst.uuid, TEST_DOMAIN);
    assert_eq!(inst.name, "test");
    assert_eq!(inst.host, DEFAULT_HOST);
    assert!(inst.running);
    assert_eq!(inst.memory_bytes, 2 * 1024 * 1024 * 1024);
    assert_eq!(inst.vcpus, 2);
    assert_eq!(inst.disks.len(), 1);
    assert_eq!(inst.disks[0].target, "vda");
    assert_eq!(
        inst.disks[0].format, None,
        "the test domain's disk declares no format"
    );
    assert_eq!(inst.disks[0].source.as_deref(), Some("/guest/diskimage1"));
    assert!(!inst.has_host_devices);
    assert_eq!(inst.owner_tenant, None);
    assert_eq!(inst.current_snapshot, None);
}

#[tokio::test]
async fn finds_demo_domains_on_the_second_host_with_disks_owner_and_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());

    let web = backend.locate(DEMO_WEB).await.unwrap();
    assert_eq!(web.host, DEMO_HOST);
    assert_eq!(web.name, "demo-web");
    assert_eq!(web.memory_bytes, 512 * 1024 * 1024);
    assert_eq!(web.owner_tenant.as_deref(), Some("demo"));
    assert_eq!(web.disks.len(), 1);
    assert_eq!(web.disks[0].format.as_deref(), Some("qcow2"));
    assert_eq!(
        web.disks[0].source.as_deref(),
        Some("/var/lib/snapgate-demo/demo-web.qcow2")
    );
    assert!(
        web.disks[0].size_bytes.is_some_and(|s| s > 0),
        "capacity from virDomainGetBlockInfo"
    );
    assert_eq!(web.cpu.model.as_deref(), Some("Haswell"));
    assert_eq!(web.cpu.vendor.as_deref(), Some("Intel"));
    assert_eq!(
        web.cpu.features,
        vec!["avx2".to_owned()],
        "disabled features are not required"
    );
    let cpu_xml = web.cpu_xml.as_deref().unwrap();
    assert!(
        cpu_xml.starts_with("<cpu") && cpu_xml.contains("Haswell") && cpu_xml.ends_with("</cpu>")
    );

    let db = backend.locate(DEMO_DB).await.unwrap();
    let targets: Vec<_> = db.disks.iter().map(|d| d.target.as_str()).collect();
    assert_eq!(targets, ["vda", "vdb"]);

    let nova = backend.locate(NOVA_APP).await.unwrap();
    assert_eq!(
        nova.owner_tenant.as_deref(),
        Some("11111111-1111-1111-1111-111111111111")
    );

    let raw = backend.locate(RAW_DISK).await.unwrap();
    assert_eq!(raw.disks[0].format.as_deref(), Some("raw"));

    let gpu = backend.locate(GPU_VM).await.unwrap();
    assert!(gpu.has_host_devices);

    let stopped = backend.locate(STOPPED_VM).await.unwrap();
    assert!(!stopped.running);
}

#[tokio::test]
async fn unknown_uuid_is_instance_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path());
    let missing = Uuid::new_v4();
    match backend.locate(missing).await {
        Err(ComputeError::InstanceNotFound(id)) => assert_eq!(id, missing),
        other => panic!("expected InstanceNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn hosts_are_listed_in_configuration_order() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        backend(dir.path()).hosts(),
        vec![DEFAULT_HOST.to_owned(), DEMO_HOST.to_owned()]
    );
}
