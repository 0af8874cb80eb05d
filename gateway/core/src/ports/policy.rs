//! Admission policy: operator-written plugins decide whether a save, apply or delete may go
//! ahead. The wasmtime implementation is `snapgate-policy`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::quota::QuotaUsage;
use crate::{CpuCompatibility, CpuInfo, Instance, OperationKind, SaveMode, SnapshotKind};

/// The state an apply or delete acts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyState {
    pub uuid: Uuid,
    pub name: String,
    pub saved_on_host: String,
    pub cpu: CpuInfo,
    pub size_bytes: i64,
    pub age_seconds: i64,
}

pub type QuotaUsageView = QuotaUsage;

/// What the caller of a save asked for, as validated (the name in NFC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySave {
    pub name: String,
    pub description: Option<String>,
    /// The caller's mode, else the configured one.
    pub mode: SaveMode,
    /// What the save will make (`auto` resolved).
    pub kind: SnapshotKind,
    /// When the state may be deleted by the gateway; `None` until saves carry an expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Everything a policy is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyInput {
    pub operation: OperationKind,
    pub tenant: String,
    pub roles: Vec<String>,
    pub request_time: DateTime<Utc>,
    pub instance: Instance,
    /// States the instance keeps now (for per-instance caps).
    pub instance_state_count: u32,
    pub state: Option<PolicyState>,
    /// What the caller asked for (save only).
    pub save: Option<PolicySave>,
    pub target_host: String,
    pub target_host_cpu: CpuInfo,
    /// libvirt's comparison of the saved CPU with the target host (apply only).
    pub cpu_compatibility: CpuCompatibility,
    pub quota: QuotaUsage,
}

/// One plugin's verdict on one request: recorded, counted and readable by admins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    pub plugin: String,
    pub plugin_sha256: String,
    /// `enforce` or `audit`.
    pub mode: String,
    /// `allow`, `deny`, `error` (the plugin failed; `on_error` decided).
    pub outcome: String,
    /// True when this decision let the request through although the plugin denied or failed
    /// (audit mode or `on_error = allow`).
    pub overridden: bool,
    pub code: Option<String>,
    pub reason: Option<String>,
    pub warnings: Vec<String>,
    pub latency_us: i64,
}

/// The chain's verdict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyOutcome {
    /// The first enforcing denial, if any: (plugin, code, reason).
    pub denial: Option<(String, String, String)>,
    pub warnings: Vec<String>,
    pub decisions: Vec<Decision>,
}

#[async_trait]
pub trait PolicyEngine: Send + Sync + 'static {
    async fn evaluate(&self, input: &PolicyInput) -> PolicyOutcome;

    /// Whether any plugin looks at `operation`. When none does, the service neither builds
    /// the input (a quota read, a count, libvirt calls) nor calls [`PolicyEngine::evaluate`].
    fn wants(&self, operation: OperationKind) -> bool {
        let _ = operation;
        true
    }
}

/// The engine used when no plugin is configured: allows everything, records nothing.
#[derive(Debug, Default)]
pub struct AllowAll;

#[async_trait]
impl PolicyEngine for AllowAll {
    async fn evaluate(&self, _input: &PolicyInput) -> PolicyOutcome {
        PolicyOutcome::default()
    }

    fn wants(&self, _operation: OperationKind) -> bool {
        false
    }
}

/// Administration of the policy chain: what is loaded, and a reload from the configuration.
/// The service holds it and authorizes every call to it (handlers never reach it).
#[async_trait]
pub trait PolicyAdmin: Send + Sync + 'static {
    /// Rebuilds the chain from the configuration and swaps it in; returns the new chain. On
    /// an error the old chain keeps serving and the message says why.
    async fn reload(&self) -> Result<serde_json::Value, String>;
    /// The loaded chain, in order.
    fn chain(&self) -> serde_json::Value;
}

/// Used when the gateway has no plugin chain configured.
#[derive(Debug, Default)]
pub struct NoPolicyAdmin;

#[async_trait]
impl PolicyAdmin for NoPolicyAdmin {
    async fn reload(&self) -> Result<serde_json::Value, String> {
        Ok(serde_json::json!({ "plugins": [] }))
    }
    fn chain(&self) -> serde_json::Value {
        serde_json::json!({ "plugins": [] })
    }
}
