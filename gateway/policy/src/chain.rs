//! A loaded chain of plugins and how it turns one request into a `PolicyOutcome`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use snapgate_core::ports::{Decision, PolicyInput, PolicyOutcome};
use snapgate_core::OperationKind;

use crate::bindings::{ContractVersion, Request};
use crate::convert;
use crate::plugin::{CompiledFrom, Counters, LoadedPlugin, Verdict};
use crate::pool::Handoff;
use crate::spec::{Mode, OnError};

/// The denial code when a failing plugin fails closed.
pub(crate) const PLUGIN_FAILED_CODE: &str = "policy_plugin_failed";

pub(crate) struct Chain {
    pub generation: u64,
    pub loaded_at: DateTime<Utc>,
    pub plugins: Vec<LoadedPlugin>,
}

/// The chain as an admin sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ChainInfo {
    /// Increases by one at every successful load or reload.
    pub generation: u64,
    pub loaded_at: DateTime<Utc>,
    pub plugins: Vec<PluginSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PluginSummary {
    pub name: String,
    pub file: PathBuf,
    pub sha256: String,
    pub mode: Mode,
    pub on_error: OnError,
    /// Empty means every operation.
    pub operations: Vec<OperationKind>,
    /// Only these tenants (empty: every tenant).
    pub tenants: Vec<String>,
    /// These tenants skip the plugin.
    pub exclude_tenants: Vec<String>,
    pub compiled_from: CompiledFrom,
    /// The `snapgate:policy` version the plugin was built against.
    pub contract: ContractVersion,
    pub imports: Vec<String>,
    pub stats: PluginStats,
}

/// Counters since the plugin was (re)loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PluginStats {
    pub evaluations: u64,
    pub allowed: u64,
    pub denied: u64,
    pub errors: u64,
    /// Errors let through by `on_error = allow`.
    pub fail_open: u64,
}

impl Chain {
    pub(crate) fn info(&self) -> ChainInfo {
        ChainInfo {
            generation: self.generation,
            loaded_at: self.loaded_at,
            plugins: self
                .plugins
                .iter()
                .map(|p| PluginSummary {
                    name: p.spec.name.clone(),
                    file: p.spec.file.clone(),
                    sha256: p.sha256.clone(),
                    mode: p.spec.mode,
                    on_error: p.spec.on_error,
                    operations: p.spec.operations.clone(),
                    tenants: p.spec.tenants.clone(),
                    exclude_tenants: p.spec.exclude_tenants.clone(),
                    compiled_from: p.compiled_from,
                    contract: p.version(),
                    imports: p.imports.clone(),
                    stats: stats(&p.counters),
                })
                .collect(),
        }
    }

    /// Runs the plugins that apply to the operation, in order. CPU work: call it off the
    /// async runtime's workers.
    pub(crate) fn evaluate(&self, input: &PolicyInput) -> PolicyOutcome {
        let mut outcome = PolicyOutcome::default();
        // Converted once per request; only `config` differs between plugins.
        let mut request = convert::request(input, "");
        // Tells the refiller once, when dropped on return: after every plugin ran.
        let mut handoff = Handoff::default();
        for plugin in self
            .plugins
            .iter()
            .filter(|p| p.spec.applies_to_request(input.operation, &input.tenant))
        {
            request.config.clone_from(&plugin.spec.config);
            let decision = run_one(plugin, &request, &mut handoff);
            outcome.warnings.extend(decision.warnings.iter().cloned());
            let refuses = !decision.overridden && decision.outcome != "allow";
            if refuses {
                outcome.denial = Some((
                    decision.plugin.clone(),
                    decision
                        .code
                        .clone()
                        .unwrap_or_else(|| PLUGIN_FAILED_CODE.to_string()),
                    decision.reason.clone().unwrap_or_default(),
                ));
            }
            outcome.decisions.push(decision);
            if refuses {
                // The first enforcing denial ends the chain: later plugins are not run.
                break;
            }
        }
        outcome
    }
}

/// Evaluates one plugin and turns its verdict, its mode and its failure policy into a
/// recorded decision; counts it.
fn run_one<'a>(plugin: &'a LoadedPlugin, request: &Request, handoff: &mut Handoff<'a>) -> Decision {
    let spec = &plugin.spec;
    let evaluation = plugin.evaluate(request, false, handoff);
    if evaluation.host.dropped_logs > 0 {
        tracing::warn!(target: "snapgate::plugin", plugin = %spec.name, dropped = evaluation.host.dropped_logs, "plugin log lines over the cap were dropped");
    }
    let audit = spec.mode == Mode::Audit;
    let counters = &plugin.counters;
    Counters::bump(&counters.evaluations);

    let mut decision = Decision {
        plugin: spec.name.clone(),
        plugin_sha256: plugin.sha256.clone(),
        mode: spec.mode.as_str().to_string(),
        outcome: String::new(),
        overridden: false,
        code: None,
        reason: None,
        warnings: Vec::new(),
        latency_us: i64::try_from(evaluation.elapsed.as_micros()).unwrap_or(i64::MAX),
    };
    match evaluation.result {
        Ok(Verdict::Allow { warnings }) => {
            Counters::bump(&counters.allowed);
            plugin.metrics.allowed.increment(1);
            decision.outcome = "allow".into();
            decision.warnings = warnings;
        }
        Ok(Verdict::Deny {
            code,
            reason,
            warnings,
        }) => {
            Counters::bump(&counters.denied);
            plugin.metrics.denied.increment(1);
            decision.outcome = "deny".into();
            decision.overridden = audit;
            decision.code = Some(code);
            decision.reason = Some(reason);
            decision.warnings = warnings;
        }
        Err(error) => {
            Counters::bump(&counters.errors);
            plugin.metrics.errors.increment(1);
            tracing::warn!(plugin = %spec.name, error = %error, on_error = spec.on_error.as_str(), mode = spec.mode.as_str(), "policy plugin failed");
            decision.outcome = "error".into();
            decision.code = Some(PLUGIN_FAILED_CODE.to_string());
            decision.reason = Some(format!(
                "policy plugin {} failed ({}): {}",
                spec.name,
                error.kind(),
                error.client_text()
            ));
            // Audit plugins never block, even when they fail.
            decision.overridden = audit || spec.on_error == OnError::Allow;
            if spec.on_error == OnError::Allow && !audit {
                Counters::bump(&counters.fail_open);
                plugin.metrics.fail_open.increment(1);
            }
        }
    }
    plugin
        .metrics
        .eval_seconds
        .record(evaluation.elapsed.as_secs_f64());
    decision
}

fn stats(c: &Counters) -> PluginStats {
    PluginStats {
        evaluations: c.evaluations.load(Ordering::Relaxed),
        allowed: c.allowed.load(Ordering::Relaxed),
        denied: c.denied.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        fail_open: c.fail_open.load(Ordering::Relaxed),
    }
}

/// Shared handle to a chain: requests clone the `Arc` at their start and keep that chain.
pub(crate) type SharedChain = Arc<Chain>;
