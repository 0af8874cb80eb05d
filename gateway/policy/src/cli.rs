//! One-shot helpers for the `snapgate plugin check|eval` commands: the same runtime, limits
//! and linking as the gateway, for one component.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use snapgate_core::ports::PolicyInput;
use wasmtime::component::Component;

use crate::convert;
use crate::error::{EvalError, LoadError};
use crate::host::LogLine;
use crate::plugin::{import_names, link, LoadedPlugin, Verdict};
use crate::pool::Handoff;
use crate::runtime::{build_engine, EpochTicker};
use crate::spec::{PluginSpec, PolicyLimits};

/// What `check` found out about a component.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub path: PathBuf,
    pub sha256: String,
    pub size_bytes: u64,
    /// Always `snapgate:policy/policy@0.1.0` for a component that passes the check.
    pub world: String,
    /// Every import of the component. `log` is the contract's; any other (WASI interfaces of
    /// Rust guests) is linked to a function that traps.
    pub imports: Vec<String>,
    /// Imports that are not part of the contract: calling them traps.
    pub trapping_imports: Vec<String>,
    pub exports: Vec<String>,
}

/// What `eval` measured.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub plugin_sha256: String,
    /// `allow`, `deny` or `error`.
    pub outcome: String,
    pub code: Option<String>,
    pub reason: Option<String>,
    pub warnings: Vec<String>,
    /// Set when the outcome is `error`.
    pub error: Option<EvalError>,
    /// Instantiation plus call, on a freshly created instance.
    pub elapsed: Duration,
    /// Largest linear memory the instance reached, in bytes.
    pub peak_memory_bytes: usize,
    pub logs: Vec<LogLine>,
    /// Lines over the log cap, not written.
    pub dropped_logs: usize,
}

const WORLD: &str = "snapgate:policy/policy@0.1.0";

/// Checks that `path` is a component of the contract's world (exports and imports), and
/// reports its imports.
pub fn check_component(path: &Path) -> Result<PluginInfo, LoadError> {
    let plugin = plugin_label(path);
    let limits = PolicyLimits::default();
    let engine = build_engine(&limits)?;
    let wasm = std::fs::read(path).map_err(|source| LoadError::Read {
        plugin: plugin.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    let component =
        Component::from_binary(&engine, &wasm).map_err(|e| LoadError::NotAComponent {
            plugin: plugin.clone(),
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
    link(&engine, &component).map_err(|message| LoadError::WrongWorld {
        plugin,
        path: path.to_path_buf(),
        message,
    })?;
    let imports = import_names(&engine, &component);
    let trapping_imports = imports
        .iter()
        .filter(|i| i.as_str() != "log")
        .cloned()
        .collect();
    let exports = component
        .component_type()
        .exports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    Ok(PluginInfo {
        path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(&wasm)),
        size_bytes: wasm.len() as u64,
        world: WORLD.to_string(),
        imports,
        trapping_imports,
        exports,
    })
}

/// Loads the component and evaluates `request` once under `limits`, exactly as the gateway
/// would (fresh instance, deadline, memory cap), keeping its log lines.
pub fn eval_once(
    path: &Path,
    request: &PolicyInput,
    config_json: &str,
    limits: PolicyLimits,
) -> Result<EvalReport, LoadError> {
    let engine = build_engine(&limits)?;
    let mut spec = PluginSpec::new(plugin_label(path), path);
    spec.config = config_json.to_string();
    let plugin = LoadedPlugin::load(&engine, spec, &limits)?;
    let _ticker = EpochTicker::start(engine.clone())?;
    let evaluation = plugin.evaluate(
        &convert::request(request, config_json),
        true,
        &mut Handoff::default(),
    );
    let mut report = EvalReport {
        plugin_sha256: plugin.sha256.clone(),
        outcome: String::new(),
        code: None,
        reason: None,
        warnings: Vec::new(),
        error: None,
        elapsed: evaluation.elapsed,
        peak_memory_bytes: evaluation.host.peak_memory,
        logs: evaluation.host.logs,
        dropped_logs: evaluation.host.dropped_logs,
    };
    match evaluation.result {
        Ok(Verdict::Allow { warnings }) => {
            report.outcome = "allow".into();
            report.warnings = warnings;
        }
        Ok(Verdict::Deny {
            code,
            reason,
            warnings,
        }) => {
            report.outcome = "deny".into();
            report.code = Some(code);
            report.reason = Some(reason);
            report.warnings = warnings;
        }
        Err(e) => {
            report.outcome = "error".into();
            report.error = Some(e);
        }
    }
    Ok(report)
}

fn plugin_label(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
