//! The helpers behind `snapgate plugin check|eval|test`: the same runtime, limits
//! and linking as the gateway, for one component.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::bindings::ContractVersion;
use crate::error::{EvalError, LoadError};
use crate::host::LogLine;
use crate::json;
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
    /// The contract's world the component was built against, e.g.
    /// `snapgate:policy/policy@0.2.0`.
    pub world: String,
    /// Its version, e.g. `0.2.0`.
    pub contract: ContractVersion,
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
    let pre = link(&engine, &component).map_err(|message| LoadError::WrongWorld {
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
        world: pre.version().world(),
        contract: pre.version(),
        imports,
        trapping_imports,
        exports,
    })
}

/// A plugin of a chain that loads: what `snapgate config` reports.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedPlugin {
    pub name: String,
    pub file: PathBuf,
    pub sha256: String,
    pub contract: ContractVersion,
}

/// Loads every plugin of a chain as the gateway does at start and on reload (read the file,
/// check its pin, compile, link against a contract version), without starting anything and
/// without the compiled-code cache: for `snapgate config`. The first failure is returned.
pub fn check_chain(
    specs: &[PluginSpec],
    limits: &PolicyLimits,
) -> Result<Vec<CheckedPlugin>, LoadError> {
    let limits = PolicyLimits {
        cache_dir: None,
        ..limits.clone()
    };
    let engine = build_engine(&limits)?;
    specs
        .iter()
        .map(|spec| {
            let plugin = LoadedPlugin::load(&engine, spec.clone(), &limits)?;
            Ok(CheckedPlugin {
                name: spec.name.clone(),
                file: spec.file.clone(),
                sha256: plugin.sha256.clone(),
                contract: plugin.version(),
            })
        })
        .collect()
}

/// A plugin loaded for the author's tools: compiled once, then evaluated as often as asked,
/// each time exactly as the gateway would (fresh instance, deadline, memory cap), keeping its
/// log lines.
pub struct PluginRunner {
    plugin: LoadedPlugin,
    // Dropped after the plugin: deadlines tick while it may run.
    _ticker: EpochTicker,
}

impl PluginRunner {
    pub fn load(path: &Path, limits: PolicyLimits) -> Result<Self, LoadError> {
        let engine = build_engine(&limits)?;
        let plugin =
            LoadedPlugin::load(&engine, PluginSpec::new(plugin_label(path), path), &limits)?;
        let ticker = EpochTicker::start(engine)?;
        Ok(PluginRunner {
            plugin,
            _ticker: ticker,
        })
    }

    /// The contract version the plugin was built against.
    pub fn contract(&self) -> ContractVersion {
        self.plugin.version()
    }

    /// Evaluates `request` with `config_json` as the plugin's configuration.
    pub fn eval(&self, request: &json::Request, config_json: &str) -> EvalReport {
        let evaluation =
            self.plugin
                .evaluate(&request.to_wit(config_json), true, &mut Handoff::default());
        let mut report = EvalReport {
            plugin_sha256: self.plugin.sha256.clone(),
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
        report
    }
}

/// Loads the component and evaluates `request` once under `limits` (see [`PluginRunner`]).
pub fn eval_once(
    path: &Path,
    request: &json::Request,
    config_json: &str,
    limits: PolicyLimits,
) -> Result<EvalReport, LoadError> {
    Ok(PluginRunner::load(path, limits)?.eval(request, config_json))
}

fn plugin_label(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
