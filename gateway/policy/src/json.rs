//! The contract's `request` (`snapgate:policy@0.2.0`) as JSON, for the author's tools
//! (`snapgate plugin eval|test`): the WIT's names (kebab-case, `request-time-ms`, `saved-cpu`),
//! the WIT's enum cases, the WIT's optional fields as `null` or absent. [`request_schema`] is
//! its JSON Schema (`snapgate plugin schema`), derived from these types so the two cannot
//! disagree. The gateway itself builds the WIT request from `PolicyInput` (`convert.rs`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{PartialSchema, ToSchema};

use crate::bindings::v0_2 as wit;

/// `request`. `config` may be left out (the tools set it from `--config` or the case).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Request {
    pub operation: Operation,
    pub tenant: String,
    pub roles: Vec<String>,
    /// Unix time of the request in milliseconds.
    pub request_time_ms: i64,
    pub instance: Instance,
    /// The state for apply and delete; null for save.
    #[serde(default)]
    pub state: Option<SavedState>,
    /// What the caller asked for (save only; null for apply and delete).
    #[serde(default)]
    pub save: Option<SaveRequest>,
    pub instance_state_count: u32,
    pub target_host: String,
    pub target_host_cpu: Cpu,
    pub cpu_compatibility: CpuCompatibility,
    pub quota: QuotaUsage,
    /// The plugin's configuration as JSON text; `{}` when absent.
    #[serde(default = "empty_config")]
    pub config: String,
}

fn empty_config() -> String {
    "{}".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    Save,
    Apply,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Disk {
    pub target: String,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub size_bytes: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Cpu {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub vendor: Option<String>,
    pub features: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Instance {
    pub uuid: String,
    pub name: String,
    pub host: String,
    pub memory_bytes: i64,
    pub vcpus: u32,
    pub disks: Vec<Disk>,
    pub has_host_devices: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SavedState {
    pub uuid: String,
    pub name: String,
    pub saved_on_host: String,
    pub saved_cpu: Cpu,
    pub size_bytes: i64,
    pub age_seconds: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CpuCompatibility {
    Identical,
    Superset,
    Incompatible,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SaveMode {
    Internal,
    External,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    Internal,
    External,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SaveRequest {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub mode: SaveMode,
    pub kind: SnapshotKind,
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

/// A limit of -1 is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ResourceUsage {
    pub limit: i64,
    pub in_use: i64,
    pub reserved: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct QuotaUsage {
    pub states: ResourceUsage,
    pub state_bytes: ResourceUsage,
    pub concurrent_operations: ResourceUsage,
    pub saves_per_hour: ResourceUsage,
}

/// The JSON Schema (draft 2020-12) of [`Request`], as `snapgate plugin schema` prints it.
pub fn request_schema() -> Value {
    let mut defs = Vec::new();
    <Request as ToSchema>::schemas(&mut defs);
    let mut doc =
        serde_json::to_value(<Request as PartialSchema>::schema()).expect("a schema serializes");
    let defs: serde_json::Map<String, Value> = defs
        .into_iter()
        .map(|(name, schema)| {
            (
                name,
                serde_json::to_value(schema).expect("a schema serializes"),
            )
        })
        .collect();
    doc["$defs"] = Value::Object(defs);
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema".into();
    doc["title"] = "snapgate:policy@0.2.0 request".into();
    // utoipa writes OpenAPI references; in a standalone schema they point into `$defs`.
    rewrite_refs(&mut doc);
    doc
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s) if key == "$ref" => {
                        *s = s.replace("#/components/schemas/", "#/$defs/");
                    }
                    _ => rewrite_refs(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

impl Request {
    /// The WIT request, with `config` as the plugin's configuration.
    pub(crate) fn to_wit(&self, config: &str) -> wit::Request {
        let cpu = |c: &Cpu| wit::Cpu {
            model: c.model.clone(),
            vendor: c.vendor.clone(),
            features: c.features.clone(),
        };
        let usage = |u: &ResourceUsage| wit::ResourceUsage {
            limit: u.limit,
            in_use: u.in_use,
            reserved: u.reserved,
        };
        wit::Request {
            operation: match self.operation {
                Operation::Save => wit::Operation::Save,
                Operation::Apply => wit::Operation::Apply,
                Operation::Delete => wit::Operation::Delete,
            },
            tenant: self.tenant.clone(),
            roles: self.roles.clone(),
            request_time_ms: self.request_time_ms,
            instance: wit::Instance {
                uuid: self.instance.uuid.clone(),
                name: self.instance.name.clone(),
                host: self.instance.host.clone(),
                memory_bytes: self.instance.memory_bytes,
                vcpus: self.instance.vcpus,
                disks: self
                    .instance
                    .disks
                    .iter()
                    .map(|d| wit::Disk {
                        target: d.target.clone(),
                        format: d.format.clone(),
                        size_bytes: d.size_bytes,
                    })
                    .collect(),
                has_host_devices: self.instance.has_host_devices,
            },
            state: self.state.as_ref().map(|s| wit::SavedState {
                uuid: s.uuid.clone(),
                name: s.name.clone(),
                saved_on_host: s.saved_on_host.clone(),
                saved_cpu: cpu(&s.saved_cpu),
                size_bytes: s.size_bytes,
                age_seconds: s.age_seconds,
            }),
            save: self.save.as_ref().map(|s| wit::SaveRequest {
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
                expires_at_ms: s.expires_at_ms,
            }),
            instance_state_count: self.instance_state_count,
            target_host: self.target_host.clone(),
            target_host_cpu: cpu(&self.target_host_cpu),
            cpu_compatibility: match self.cpu_compatibility {
                CpuCompatibility::Identical => wit::CpuCompatibility::Identical,
                CpuCompatibility::Superset => wit::CpuCompatibility::Superset,
                CpuCompatibility::Incompatible => wit::CpuCompatibility::Incompatible,
                CpuCompatibility::Unknown => wit::CpuCompatibility::Unknown,
            },
            quota: wit::QuotaUsage {
                states: usage(&self.quota.states),
                state_bytes: usage(&self.quota.state_bytes),
                concurrent_operations: usage(&self.quota.concurrent_operations),
                saves_per_hour: usage(&self.quota.saves_per_hour),
            },
            config: config.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every property the schema names is a field of the WIT (same spelling), and every
    /// reference resolves.
    #[test]
    fn the_schema_speaks_the_wit() {
        let wit = include_str!("../../../wit/0.2.0/snapgate-policy.wit");
        let schema = request_schema();
        let text = schema.to_string();
        for (name, def) in schema["$defs"].as_object().unwrap() {
            for field in def["properties"].as_object().into_iter().flatten() {
                assert!(
                    wit.contains(&format!("{}: ", field.0)),
                    "{name}.{} is not a WIT field",
                    field.0
                );
            }
        }
        for field in schema["properties"].as_object().unwrap().keys() {
            assert!(wit.contains(&format!("{field}: ")), "{field}");
        }
        for needle in ["request-time-ms", "saved-cpu", "expires-at-ms", "in-use"] {
            assert!(text.contains(needle), "{needle} missing");
        }
        assert!(!text.contains("#/components/"), "{text}");
        let refs: Vec<&str> = text
            .match_indices("#/$defs/")
            .map(|(i, _)| text[i + 8..].split('"').next().expect("a reference ends"))
            .collect();
        assert!(!refs.is_empty());
        for r in refs {
            assert!(schema["$defs"].get(r).is_some(), "dangling $ref {r}");
        }
    }
}
