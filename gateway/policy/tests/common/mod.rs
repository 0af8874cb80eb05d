//! Shared fixtures: the built plugins and crafted requests.
#![allow(dead_code)]

use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use snapgate_core::ports::{PolicyInput, PolicySave, PolicyState, QuotaUsage};
use snapgate_core::{
    CpuCompatibility, CpuInfo, DiskInfo, Instance, OperationKind, SaveMode, SnapshotKind,
};
use snapgate_policy::{Mode, OnError, PluginSpec, PolicyLimits};
use uuid::Uuid;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A component from `plugins/dist/`. Fails (never skips) when it has not been built.
pub fn plugin(name: &str) -> PathBuf {
    let path = repo_root()
        .join("plugins/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins.sh (it builds every plugin for wasm32-wasip2 into plugins/dist/)",
        path.display()
    );
    path
}

pub fn spec(name: &str) -> PluginSpec {
    PluginSpec::new(name, plugin(name))
}

pub fn spec_with(name: &str, config: &str, on_error: OnError, mode: Mode) -> PluginSpec {
    let mut s = spec(name);
    s.config = config.to_string();
    s.on_error = on_error;
    s.mode = mode;
    s
}

pub fn limits() -> PolicyLimits {
    // Debug builds run guests slower than release, and CI shares two cores with gateway
    // processes and QEMU guests: well-behaved plugins (and the alloc bomb, which must meet
    // the memory cap, not the clock) get a budget far above their need.
    PolicyLimits {
        deadline: std::time::Duration::from_secs(2),
        ..PolicyLimits::default()
    }
}

fn instance() -> Instance {
    Instance {
        uuid: Uuid::parse_str("6f1c1f0e-3a52-4d1e-9d55-0c1a2b3c4d5e").unwrap(),
        name: "web-1".into(),
        host: "host-a".into(),
        running: true,
        memory_bytes: 128 << 20,
        vcpus: 1,
        disks: vec![DiskInfo {
            target: "vda".into(),
            format: Some("qcow2".into()),
            source: None,
            size_bytes: Some(1 << 30),
        }],
        has_host_devices: false,
        owner_tenant: Some("tenant-a".into()),
        cpu: cpu(&["sse4.2", "avx"]),
        cpu_xml: None,
        current_snapshot: None,
    }
}

pub fn cpu(features: &[&str]) -> CpuInfo {
    CpuInfo {
        model: Some("Skylake-Client".into()),
        vendor: Some("Intel".into()),
        features: features.iter().map(|f| f.to_string()).collect(),
    }
}

/// A save of a running qcow2 instance that keeps 2 states.
pub fn save_request() -> PolicyInput {
    PolicyInput {
        operation: OperationKind::Save,
        tenant: "tenant-a".into(),
        roles: vec!["member".into()],
        request_time: Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap(),
        instance: instance(),
        instance_state_count: 2,
        state: None,
        save: Some(PolicySave {
            name: "nightly".into(),
            description: None,
            mode: SaveMode::Auto,
            kind: SnapshotKind::Internal,
            expires_at: None,
        }),
        target_host: "host-a".into(),
        target_host_cpu: cpu(&["sse4.2", "avx"]),
        cpu_compatibility: CpuCompatibility::Unknown,
        quota: QuotaUsage::default(),
    }
}

/// An apply on host-b of a state saved on host-a with features `saved`, host-b having `host`.
pub fn apply_request(compat: CpuCompatibility, saved: &[&str], host: &[&str]) -> PolicyInput {
    PolicyInput {
        operation: OperationKind::Apply,
        state: Some(PolicyState {
            uuid: Uuid::parse_str("0b7e6b52-9a3f-4f0e-8a63-3c2d1e0f9a8b").unwrap(),
            name: "before-upgrade".into(),
            saved_on_host: "host-a".into(),
            cpu: cpu(saved),
            size_bytes: 300 << 20,
            age_seconds: 3600,
        }),
        save: None,
        target_host: "host-b".into(),
        target_host_cpu: cpu(host),
        cpu_compatibility: compat,
        ..save_request()
    }
}

/// Limits for tests whose plugin must hit the deadline: short enough to keep them fast, long
/// enough for a healthy plugin in the same chain (well under 1 ms in debug builds).
pub fn runaway_limits() -> PolicyLimits {
    PolicyLimits {
        deadline: std::time::Duration::from_millis(500),
        ..limits()
    }
}
