//! What the operator configures: the plugins of the chain and the limits they run under.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use snapgate_core::OperationKind;

/// Whether a plugin's denial stops the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A denial refuses the request.
    #[default]
    Enforce,
    /// A denial (or a failure) is recorded with `overridden: true` and the request goes on.
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// What a plugin failure (trap, deadline, memory cap, bad answer) means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail closed: the request is refused (the default).
    #[default]
    Deny,
    /// Fail open: the request goes on; counted in `snapgate_policy_fail_open_total`.
    Allow,
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Deny => "deny",
            OnError::Allow => "allow",
        }
    }
}

fn default_config() -> String {
    "{}".to_string()
}

/// One plugin of the chain, as written in the gateway config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// Unique within the chain; names the plugin in decisions, logs and metrics.
    pub name: String,
    /// Path of the component (`.wasm`).
    pub file: PathBuf,
    /// The plugin's configuration, JSON text handed to it as `request.config`.
    #[serde(default = "default_config")]
    pub config: String,
    /// Operations the plugin sees; empty means all.
    #[serde(default)]
    pub operations: Vec<OperationKind>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub on_error: OnError,
    /// The component's expected sha256 (hex, as `snapgate plugin check` prints it). A file
    /// with another digest is refused at start and on reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Only requests of these tenants see the plugin (empty: every tenant).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// Requests of these tenants skip the plugin. Not with `tenants`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_tenants: Vec<String>,
}

impl PluginSpec {
    /// An enforcing, fail-closed plugin for every operation with config `{}`.
    pub fn new(name: impl Into<String>, file: impl Into<PathBuf>) -> Self {
        PluginSpec {
            name: name.into(),
            file: file.into(),
            config: default_config(),
            operations: Vec::new(),
            mode: Mode::Enforce,
            on_error: OnError::Deny,
            sha256: None,
            tenants: Vec::new(),
            exclude_tenants: Vec::new(),
        }
    }

    /// Whether the plugin looks at `op` (its `operations`) at all.
    pub fn applies_to(&self, op: OperationKind) -> bool {
        self.operations.is_empty() || self.operations.contains(&op)
    }

    /// Whether the plugin looks at `op` by `tenant`: its operations, then its tenant scope.
    pub fn applies_to_request(&self, op: OperationKind, tenant: &str) -> bool {
        self.applies_to(op)
            && (self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant))
            && !self.exclude_tenants.iter().any(|t| t == tenant)
    }

    /// Checks what can be checked without the file: a name, JSON config, a well-formed pin, at
    /// most one of `tenants` and `exclude_tenants`. The message names no plugin.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err(format!(
                "plugin at {} has an empty name",
                self.file.display()
            ));
        }
        if let Some(pin) = &self.sha256 {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "sha256 of plugin {:?} must be 64 hex digits, as `snapgate plugin check` prints it",
                    self.name
                ));
            }
        }
        if !self.tenants.is_empty() && !self.exclude_tenants.is_empty() {
            return Err(format!(
                "plugin {:?} has both tenants and exclude_tenants: use one",
                self.name
            ));
        }
        Ok(())
    }
}

/// Limits every plugin evaluation runs under. Fixed for the engine's life (a reload changes
/// plugins, not limits: the pooling allocator is sized from them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyLimits {
    /// Wall-clock budget of one plugin call, counted from the call (a pre-instantiated
    /// instance gets all of it; an inline instantiation has its own). Enforced with epoch
    /// interruption at a 1 ms tick, so the effective deadline is this rounded up to the next
    /// millisecond plus at most one tick.
    #[serde(with = "duration_ms")]
    pub deadline: Duration,
    /// Cap on one instance's linear memory.
    pub memory_bytes: usize,
    /// Where compiled components are cached; `None` compiles at every load.
    pub cache_dir: Option<PathBuf>,
    /// Fresh instances kept ready per plugin, instantiated off the request path (each is used
    /// by one request, then dropped). 0 instantiates every instance on the request path. At
    /// most [`PolicyLimits::MAX_PREWARM_INSTANCES`].
    #[serde(default = "default_prewarm_instances")]
    pub prewarm_instances: usize,
}

impl PolicyLimits {
    /// Upper bound of [`PolicyLimits::prewarm_instances`].
    pub const MAX_PREWARM_INSTANCES: usize = 32;
}

fn default_prewarm_instances() -> usize {
    8
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            deadline: Duration::from_millis(5),
            memory_bytes: 16 << 20,
            cache_dir: None,
            prewarm_instances: default_prewarm_instances(),
        }
    }
}

/// Durations as whole milliseconds in config files (`deadline = 5`).
mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
