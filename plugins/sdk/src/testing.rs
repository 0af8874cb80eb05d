//! Requests for a plugin's unit tests (`cargo test` on the build machine: a policy is plain
//! Rust, so `MyPolicy::evaluate(&req)` runs natively; only `log` needs the gateway).

use crate::{
    Cpu, CpuCompatibility, Disk, Instance, Operation, QuotaUsage, Request, ResourceUsage, SaveMode,
    SaveRequest, SavedState, SnapshotKind,
};

fn cpu(features: &[&str]) -> Cpu {
    Cpu {
        model: Some("Skylake-Client".into()),
        vendor: Some("Intel".into()),
        features: features.iter().map(|f| f.to_string()).collect(),
    }
}

fn unlimited() -> ResourceUsage {
    ResourceUsage {
        limit: -1,
        in_use: 0,
        reserved: 0,
    }
}

/// A save named `nightly` of a running 1 GiB, 1-vCPU instance `web-1` with one qcow2 disk,
/// keeping no state, by a member of `tenant-a`, config `{}`. Change what your test needs.
pub fn save_request() -> Request {
    Request {
        operation: Operation::Save,
        tenant: "tenant-a".into(),
        roles: vec!["member".into()],
        request_time_ms: 1_740_830_400_000,
        instance: Instance {
            uuid: "6f1c1f0e-3a52-4d1e-9d55-0c1a2b3c4d5e".into(),
            name: "web-1".into(),
            host: "host-a".into(),
            memory_bytes: 1 << 30,
            vcpus: 1,
            disks: vec![Disk {
                target: "vda".into(),
                format: Some("qcow2".into()),
                size_bytes: Some(10 << 30),
            }],
            has_host_devices: false,
        },
        state: None,
        save: Some(SaveRequest {
            name: "nightly".into(),
            description: None,
            mode: SaveMode::Auto,
            kind: SnapshotKind::Internal,
            expires_at_ms: None,
        }),
        instance_state_count: 0,
        target_host: "host-a".into(),
        target_host_cpu: cpu(&["sse4.2", "avx", "avx2"]),
        cpu_compatibility: CpuCompatibility::Unknown,
        quota: QuotaUsage {
            states: unlimited(),
            state_bytes: unlimited(),
            concurrent_operations: unlimited(),
            saves_per_hour: unlimited(),
        },
        config: "{}".into(),
    }
}

/// An apply of state `before-upgrade` (saved an hour ago on `host-a`) to `web-1` on `host-b`,
/// whose CPU is a superset of the saved one.
pub fn apply_request() -> Request {
    Request {
        operation: Operation::Apply,
        state: Some(SavedState {
            uuid: "0b7e6b52-9a3f-4f0e-8a63-3c2d1e0f9a8b".into(),
            name: "before-upgrade".into(),
            saved_on_host: "host-a".into(),
            saved_cpu: cpu(&["sse4.2", "avx"]),
            size_bytes: 300 << 20,
            age_seconds: 3600,
        }),
        save: None,
        target_host: "host-b".into(),
        target_host_cpu: cpu(&["sse4.2", "avx", "avx2", "avx512f"]),
        cpu_compatibility: CpuCompatibility::Superset,
        ..save_request()
    }
}
