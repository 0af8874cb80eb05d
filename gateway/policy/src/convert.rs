//! `PolicyInput` (the core's type) to the contract's `request`.

use snapgate_core::ports::{PolicyInput, PolicyState};
use snapgate_core::ports::{QuotaUsage, ResourceUsage};
use snapgate_core::{CpuCompatibility, CpuInfo, OperationKind};

use crate::bindings as wit;

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
