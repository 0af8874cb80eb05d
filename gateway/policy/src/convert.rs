//! `PolicyInput` (the core's type) to the contract's `request` (current version), and the
//! current version's request and answer to and from older versions'.

use snapgate_core::ports::{PolicyInput, PolicySave, PolicyState};
use snapgate_core::ports::{QuotaUsage, ResourceUsage};
use snapgate_core::{CpuCompatibility, CpuInfo, OperationKind, SaveMode, SnapshotKind};

use crate::bindings::v0_1;
use crate::bindings::v0_2 as wit;

pub(crate) fn request(input: &PolicyInput, config: &str) -> wit::Request {
    wit::Request {
        operation: match input.operation {
            OperationKind::Save => wit::Operation::Save,
            OperationKind::Apply => wit::Operation::Apply,
            OperationKind::Delete => wit::Operation::Delete,
        },
        tenant: input.tenant.clone(),
        roles: input.roles.clone(),
        request_time_ms: input.request_time.timestamp_millis(),
        instance: wit::Instance {
            uuid: input.instance.uuid.to_string(),
            name: input.instance.name.clone(),
            host: input.instance.host.clone(),
            memory_bytes: input.instance.memory_bytes,
            vcpus: input.instance.vcpus,
            disks: input
                .instance
                .disks
                .iter()
                .map(|d| wit::Disk {
                    target: d.target.clone(),
                    format: d.format.clone(),
                    size_bytes: d.size_bytes,
                })
                .collect(),
            has_host_devices: input.instance.has_host_devices,
        },
        state: input.state.as_ref().map(state),
        save: input.save.as_ref().map(save),
        instance_state_count: input.instance_state_count,
        target_host: input.target_host.clone(),
        target_host_cpu: cpu(&input.target_host_cpu),
        cpu_compatibility: match input.cpu_compatibility {
            CpuCompatibility::Identical => wit::CpuCompatibility::Identical,
            CpuCompatibility::Superset => wit::CpuCompatibility::Superset,
            CpuCompatibility::Incompatible => wit::CpuCompatibility::Incompatible,
            CpuCompatibility::Unknown => wit::CpuCompatibility::Unknown,
        },
        quota: quota(&input.quota),
        config: config.to_string(),
    }
}

fn state(s: &PolicyState) -> wit::SavedState {
    wit::SavedState {
        uuid: s.uuid.to_string(),
        name: s.name.clone(),
        saved_on_host: s.saved_on_host.clone(),
        saved_cpu: cpu(&s.cpu),
        size_bytes: s.size_bytes,
        age_seconds: s.age_seconds,
    }
}

fn save(s: &PolicySave) -> wit::SaveRequest {
    wit::SaveRequest {
        name: s.name.clone(),
        description: s.description.clone(),
        mode: match s.mode {
            SaveMode::Internal => wit::SaveMode::Internal,
            SaveMode::External => wit::SaveMode::External,
            SaveMode::Auto => wit::SaveMode::Auto,
        },
        kind: match s.kind {
            SnapshotKind::Internal => wit::SnapshotKind::Internal,
            SnapshotKind::External => wit::SnapshotKind::External,
        },
        expires_at_ms: s.expires_at.map(|t| t.timestamp_millis()),
    }
}

fn cpu(c: &CpuInfo) -> wit::Cpu {
    wit::Cpu {
        model: c.model.clone(),
        vendor: c.vendor.clone(),
        features: c.features.clone(),
    }
}

fn quota(q: &QuotaUsage) -> wit::QuotaUsage {
    let usage = |u: &ResourceUsage| wit::ResourceUsage {
        limit: u.limit,
        in_use: u.in_use,
        reserved: u.reserved,
    };
    wit::QuotaUsage {
        states: usage(&q.states),
        state_bytes: usage(&q.state_bytes),
        concurrent_operations: usage(&q.concurrent_operations),
        saves_per_hour: usage(&q.saves_per_hour),
    }
}

/// The 0.1.0 request: the current one without `save`.
pub(crate) fn to_v0_1(r: &wit::Request) -> v0_1::Request {
    let cpu = |c: &wit::Cpu| v0_1::Cpu {
        model: c.model.clone(),
        vendor: c.vendor.clone(),
        features: c.features.clone(),
    };
    let usage = |u: &wit::ResourceUsage| v0_1::ResourceUsage {
        limit: u.limit,
        in_use: u.in_use,
        reserved: u.reserved,
    };
    v0_1::Request {
        operation: match r.operation {
            wit::Operation::Save => v0_1::Operation::Save,
            wit::Operation::Apply => v0_1::Operation::Apply,
            wit::Operation::Delete => v0_1::Operation::Delete,
        },
        tenant: r.tenant.clone(),
        roles: r.roles.clone(),
        request_time_ms: r.request_time_ms,
        instance: v0_1::Instance {
            uuid: r.instance.uuid.clone(),
            name: r.instance.name.clone(),
            host: r.instance.host.clone(),
            memory_bytes: r.instance.memory_bytes,
            vcpus: r.instance.vcpus,
            disks: r
                .instance
                .disks
                .iter()
                .map(|d| v0_1::Disk {
                    target: d.target.clone(),
                    format: d.format.clone(),
                    size_bytes: d.size_bytes,
                })
                .collect(),
            has_host_devices: r.instance.has_host_devices,
        },
        state: r.state.as_ref().map(|s| v0_1::SavedState {
            uuid: s.uuid.clone(),
            name: s.name.clone(),
            saved_on_host: s.saved_on_host.clone(),
            saved_cpu: cpu(&s.saved_cpu),
            size_bytes: s.size_bytes,
            age_seconds: s.age_seconds,
        }),
        instance_state_count: r.instance_state_count,
        target_host: r.target_host.clone(),
        target_host_cpu: cpu(&r.target_host_cpu),
        cpu_compatibility: match r.cpu_compatibility {
            wit::CpuCompatibility::Identical => v0_1::CpuCompatibility::Identical,
            wit::CpuCompatibility::Superset => v0_1::CpuCompatibility::Superset,
            wit::CpuCompatibility::Incompatible => v0_1::CpuCompatibility::Incompatible,
            wit::CpuCompatibility::Unknown => v0_1::CpuCompatibility::Unknown,
        },
        quota: v0_1::QuotaUsage {
            states: usage(&r.quota.states),
            state_bytes: usage(&r.quota.state_bytes),
            concurrent_operations: usage(&r.quota.concurrent_operations),
            saves_per_hour: usage(&r.quota.saves_per_hour),
        },
        config: r.config.clone(),
    }
}

/// A 0.1.0 answer in the current version's terms (the same shape).
pub(crate) fn from_v0_1(d: v0_1::Decision) -> wit::Decision {
    match d {
        v0_1::Decision::Allow(warnings) => wit::Decision::Allow(warnings),
        v0_1::Decision::Deny(d) => wit::Decision::Deny(wit::Denial {
            code: d.code,
            reason: d.reason,
            warnings: d.warnings,
        }),
    }
}
