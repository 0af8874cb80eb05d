//! Errors of loading a plugin and of one evaluation.

use std::path::PathBuf;

/// A plugin could not be loaded. Every variant names the plugin so an operator sees which
/// entry of the chain to fix; on reload the old chain keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin {plugin}: cannot read {}: {source}", path.display())]
    Read {
        plugin: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {plugin}: {} is not a valid WebAssembly component: {message}", path.display())]
    NotAComponent {
        plugin: String,
        path: PathBuf,
        message: String,
    },
    /// The component implements no `snapgate:policy/policy` world the host binds (0.2.0,
    /// 0.1.0): wrong export or signature, or an import the host cannot satisfy.
    #[error("plugin {plugin}: {} does not implement snapgate:policy/policy (0.2.0 or 0.1.0): {message}", path.display())]
    WrongWorld {
        plugin: String,
        path: PathBuf,
        message: String,
    },
    /// The file is not the component the config pins (`sha256`).
    #[error("plugin {plugin}: {} has sha256 {actual} but the config pins {pinned}: refusing to load it (update the pin, or put back the pinned build)", path.display())]
    DigestMismatch {
        plugin: String,
        path: PathBuf,
        pinned: String,
        actual: String,
    },
    #[error("plugin {plugin}: config is not valid JSON: {message}")]
    BadConfig { plugin: String, message: String },
    #[error("plugin name {0:?} appears twice in the chain")]
    DuplicateName(String),
    #[error("invalid plugin spec: {0}")]
    BadSpec(String),
    #[error("policy engine setup failed: {0}")]
    Engine(String),
}

/// Why one evaluation produced no usable decision. The plugin's outcome is then `error` and
/// its `on_error` setting decides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvalError {
    #[error("deadline of {deadline_ms} ms exceeded")]
    Deadline { deadline_ms: u64 },
    #[error("memory cap of {cap_bytes} bytes exceeded")]
    MemoryCap { cap_bytes: usize },
    #[error("plugin trapped: {message}")]
    Trap { message: String },
    #[error("could not instantiate plugin: {message}")]
    Instantiate { message: String },
    /// The answer broke the contract's rules (code syntax, sizes).
    #[error("bad answer: {message}")]
    BadAnswer { message: String },
}

impl EvalError {
    /// What a client may read of the failure (it becomes the reason of a denial): the limits
    /// crossed and contract rules broken are snapgate's own words; a trap or an instantiation
    /// failure is named, never quoted (wasmtime's text carries backtraces and the guest's
    /// internals). The full error is logged where the decision is made.
    pub fn client_text(&self) -> String {
        match self {
            EvalError::Deadline { .. } | EvalError::MemoryCap { .. } => self.to_string(),
            EvalError::Trap { .. } => "the plugin trapped".into(),
            EvalError::Instantiate { .. } => "the plugin could not be instantiated".into(),
            EvalError::BadAnswer { message } => format!("bad answer: {message}"),
        }
    }

    /// Short stable name, used in logs and the decision's reason.
    pub fn kind(&self) -> &'static str {
        match self {
            EvalError::Deadline { .. } => "deadline",
            EvalError::MemoryCap { .. } => "memory_cap",
            EvalError::Trap { .. } => "trap",
            EvalError::Instantiate { .. } => "instantiate",
            EvalError::BadAnswer { .. } => "bad_answer",
        }
    }
}
