//! One loaded plugin: its compiled component, pre-linked, and how one evaluation runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, Trap};

use crate::bindings::{v0_1, v0_2};
use crate::bindings::{
    ContractVersion, Decision as WitDecision, PolicyInstance, PolicyPre, Request,
};
use crate::cache;
use crate::error::{EvalError, LoadError};
use crate::host::{HostState, MemoryCapExceeded};
use crate::pool::{Handoff, InstancePool};
use crate::runtime::deadline_ticks;
use crate::spec::{PluginSpec, PolicyLimits};

/// Where a plugin's machine code came from at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompiledFrom {
    Compiled,
    /// Read from the on-disk cache (`PolicyLimits::cache_dir`).
    Cache,
}

/// Rules on answers, from the contract.
const MAX_CODE_LEN: usize = 64;
const MAX_REASON_BYTES: usize = 1024;
const MAX_WARNINGS: usize = 16;
const MAX_WARNING_BYTES: usize = 512;

/// A validated answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow {
        warnings: Vec<String>,
    },
    Deny {
        code: String,
        reason: String,
        warnings: Vec<String>,
    },
}

/// Counters of one plugin since it was loaded.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub evaluations: AtomicU64,
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    pub errors: AtomicU64,
    pub fail_open: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The plugin's metric handles, registered once at load. The `counter!` macros with labels,
/// called per evaluation, built the labels' strings and looked the key up in the recorder's
/// registry on every call, on the request's path.
pub(crate) struct PluginMetrics {
    pub allowed: metrics::Counter,
    pub denied: metrics::Counter,
    pub errors: metrics::Counter,
    pub fail_open: metrics::Counter,
    pub eval_seconds: metrics::Histogram,
}

impl PluginMetrics {
    fn register(spec: &PluginSpec) -> Self {
        let decisions = |outcome: &'static str| {
            metrics::counter!(
                "snapgate_policy_decisions_total",
                "plugin" => spec.name.clone(),
                "outcome" => outcome,
                "mode" => spec.mode.as_str(),
            )
        };
        PluginMetrics {
            allowed: decisions("allow"),
            denied: decisions("deny"),
            errors: decisions("error"),
            fail_open: metrics::counter!("snapgate_policy_fail_open_total", "plugin" => spec.name.clone()),
            eval_seconds: metrics::histogram!("snapgate_policy_eval_seconds", "plugin" => spec.name.clone()),
        }
    }
}

/// What one evaluation produced besides its result.
pub(crate) struct Evaluation {
    pub result: Result<Verdict, EvalError>,
    pub elapsed: Duration,
    pub host: HostState,
}

pub(crate) struct LoadedPlugin {
    pub spec: PluginSpec,
    pub sha256: String,
    pub compiled_from: CompiledFrom,
    /// Names of the component's imports (the contract's `log`, and any WASI interface the
    /// guest imports, linked to trapping stubs).
    pub imports: Vec<String>,
    pub counters: Counters,
    pub metrics: PluginMetrics,
    engine: Engine,
    pre: PolicyPre<HostState>,
    deadline: Duration,
    memory_cap: usize,
    /// Ready instances; disabled until the plugin joins a chain with pools.
    pub pool: InstancePool,
}

impl LoadedPlugin {
    /// Reads, compiles (or loads from cache) and links a plugin. Fails if it is not a
    /// component of a `snapgate:policy/policy` world the host binds (0.2.0 or 0.1.0).
    pub(crate) fn load(
        engine: &Engine,
        spec: PluginSpec,
        limits: &PolicyLimits,
    ) -> Result<Self, LoadError> {
        spec.validate().map_err(LoadError::BadSpec)?;
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&spec.config) {
            return Err(LoadError::BadConfig {
                plugin: spec.name.clone(),
                message: e.to_string(),
            });
        }
        let wasm = std::fs::read(&spec.file).map_err(|source| LoadError::Read {
            plugin: spec.name.clone(),
            path: spec.file.clone(),
            source,
        })?;
        let sha256 = hex::encode(Sha256::digest(&wasm));
        if let Some(pinned) = &spec.sha256 {
            if !pinned.eq_ignore_ascii_case(&sha256) {
                return Err(LoadError::DigestMismatch {
                    plugin: spec.name.clone(),
                    path: spec.file.clone(),
                    pinned: pinned.to_ascii_lowercase(),
                    actual: sha256,
                });
            }
        }
        let (component, compiled_from) = cache::compile(
            engine,
            &spec.name,
            &spec.file,
            &wasm,
            &sha256,
            limits.cache_dir.as_deref(),
        )?;
        let pre = link(engine, &component).map_err(|message| LoadError::WrongWorld {
            plugin: spec.name.clone(),
            path: spec.file.clone(),
            message,
        })?;
        let imports = import_names(engine, &component);
        tracing::info!(plugin = %spec.name, sha256 = %sha256, ?compiled_from, ?imports, contract = pre.version().as_str(), "policy plugin loaded");
        Ok(LoadedPlugin {
            metrics: PluginMetrics::register(&spec),
            spec,
            sha256,
            compiled_from,
            imports,
            counters: Counters::default(),
            engine: engine.clone(),
            pre,
            deadline: limits.deadline,
            memory_cap: limits.memory_bytes,
            pool: InstancePool::disabled(),
        })
    }

    /// Runs the plugin once on a fresh instance: a pre-instantiated one from the pool if
    /// there is one, else one instantiated now. `keep_logs` keeps the log lines' text in the
    /// result (for the CLI; never pooled); they always go to `tracing`. The used store, and
    /// word that the pool runs low, go to `handoff` for the refiller.
    pub(crate) fn evaluate<'a>(
        &'a self,
        request: &Request,
        keep_logs: bool,
        handoff: &mut Handoff<'a>,
    ) -> Evaluation {
        let start = Instant::now();
        let ready = if keep_logs {
            None
        } else {
            self.pool.take(handoff)
        };
        let from_pool = ready.is_some();
        let (mut store, instance) = match ready {
            Some((store, instance)) => (store, Ok(instance)),
            None => match self.instantiate(keep_logs) {
                Ok((store, instance)) => (store, Ok(instance)),
                Err((store, e)) => (store, Err(e)),
            },
        };
        let result = match instance {
            Err(e) => Err(self.classify(e, true)),
            Ok(instance) => {
                // The deadline starts now, at the call: an instance that waited in the pool
                // still gets its whole budget.
                store.set_epoch_deadline(deadline_ticks(self.deadline));
                match instance.call_evaluate(&mut store, request) {
                    Err(e) => Err(self.classify(e, false)),
                    Ok(decision) => validate(decision),
                }
            }
        };
        let elapsed = start.elapsed();
        let host = std::mem::replace(store.data_mut(), HostState::taken());
        // Dropping the store resets its memory slot: let the refiller do it.
        self.pool.retire(store, from_pool, handoff);
        Evaluation {
            result,
            elapsed,
            host,
        }
    }

    /// A fresh instance in its own store, with the memory limiter and an empty log buffer.
    /// Instantiation runs under its own deadline (a component may run code as it starts).
    /// On error the store comes back too, for what the host state recorded.
    pub(crate) fn instantiate(
        &self,
        keep_logs: bool,
    ) -> Result<(Store<HostState>, PolicyInstance), (Store<HostState>, wasmtime::Error)> {
        let mut store = Store::new(
            &self.engine,
            HostState::new(&self.spec.name, self.memory_cap, keep_logs),
        );
        store.limiter(|host| host);
        store.set_epoch_deadline(deadline_ticks(self.deadline));
        store.epoch_deadline_trap();
        match self.pre.instantiate(&mut store) {
            Ok(instance) => Ok((store, instance)),
            Err(e) => Err((store, e)),
        }
    }

    fn classify(&self, e: wasmtime::Error, instantiating: bool) -> EvalError {
        if e.downcast_ref::<MemoryCapExceeded>().is_some() {
            return EvalError::MemoryCap {
                cap_bytes: self.memory_cap,
            };
        }
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return EvalError::Deadline {
                deadline_ms: self.deadline.as_millis() as u64,
            };
        }
        let message = format!("{e:#}");
        if instantiating {
            EvalError::Instantiate { message }
        } else {
            EvalError::Trap { message }
        }
    }
}

impl LoadedPlugin {
    /// The contract version the plugin was built against.
    pub(crate) fn version(&self) -> ContractVersion {
        self.pre.version()
    }
}

/// Links the component against each contract version the host binds, newest first, and keeps
/// the first that fits (see `bindings.rs`). Fails naming every version's reason.
pub(crate) fn link(engine: &Engine, component: &Component) -> Result<PolicyPre<HostState>, String> {
    let mut reasons = Vec::new();
    for version in ContractVersion::ALL {
        match link_version(engine, component, version) {
            Ok(pre) => return Ok(pre),
            Err(reason) => reasons.push(format!("{}: {reason}", version.world())),
        }
    }
    Err(reasons.join("; "))
}

/// Links the contract's `log` import of `version` and stubs every other import with a trap,
/// then checks the component's exports against that version's world.
fn link_version(
    engine: &Engine,
    component: &Component,
    version: ContractVersion,
) -> Result<PolicyPre<HostState>, String> {
    let mut linker: Linker<HostState> = Linker::new(engine);
    match version {
        ContractVersion::V0_2 => {
            v0_2::Policy::add_to_linker::<_, HasSelf<_>>(&mut linker, |host| host)
        }
        ContractVersion::V0_1 => {
            v0_1::Policy::add_to_linker::<_, HasSelf<_>>(&mut linker, |host| host)
        }
    }
    .map_err(|e| format!("{e:#}"))?;
    // No ambient capabilities: WASI (or anything else) imported by the guest exists but traps.
    linker
        .define_unknown_imports_as_traps(component)
        .map_err(|e| format!("{e:#}"))?;
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("{e:#}"))?;
    match version {
        ContractVersion::V0_2 => v0_2::PolicyPre::new(pre).map(PolicyPre::V0_2),
        ContractVersion::V0_1 => v0_1::PolicyPre::new(pre).map(PolicyPre::V0_1),
    }
    .map_err(|e| format!("{e:#}"))
}

pub(crate) fn import_names(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Applies the contract's rules on answers.
pub(crate) fn validate(decision: WitDecision) -> Result<Verdict, EvalError> {
    let check_warnings = |warnings: &[String]| -> Result<(), EvalError> {
        if warnings.len() > MAX_WARNINGS {
            return Err(EvalError::BadAnswer {
                message: format!(
                    "{} warnings, at most {MAX_WARNINGS} allowed",
                    warnings.len()
                ),
            });
        }
        if let Some(w) = warnings.iter().find(|w| w.len() > MAX_WARNING_BYTES) {
            return Err(EvalError::BadAnswer {
                message: format!(
                    "a warning of {} bytes, at most {MAX_WARNING_BYTES} allowed",
                    w.len()
                ),
            });
        }
        Ok(())
    };
    match decision {
        WitDecision::Allow(warnings) => {
            check_warnings(&warnings)?;
            Ok(Verdict::Allow { warnings })
        }
        WitDecision::Deny(d) => {
            let code_ok = !d.code.is_empty()
                && d.code.len() <= MAX_CODE_LEN
                && d.code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !code_ok {
                return Err(EvalError::BadAnswer {
                    message: format!(
                        "deny code {:?} must be 1 to {MAX_CODE_LEN} characters of a-z, 0-9, _",
                        crate::host::truncate(d.code, 80)
                    ),
                });
            }
            if d.reason.is_empty() || d.reason.len() > MAX_REASON_BYTES {
                return Err(EvalError::BadAnswer {
                    message: format!(
                        "deny reason of {} bytes, it must have 1 to {MAX_REASON_BYTES}",
                        d.reason.len()
                    ),
                });
            }
            check_warnings(&d.warnings)?;
            Ok(Verdict::Deny {
                code: d.code,
                reason: d.reason,
                warnings: d.warnings,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::v0_2::Denial;

    fn deny(code: &str, reason: &str, warnings: Vec<String>) -> WitDecision {
        WitDecision::Deny(Denial {
            code: code.into(),
            reason: reason.into(),
            warnings,
        })
    }

    #[test]
    fn well_formed_answers_pass() {
        assert_eq!(
            validate(WitDecision::Allow(vec!["w".into()])),
            Ok(Verdict::Allow {
                warnings: vec!["w".into()]
            })
        );
        assert!(validate(deny("cpu_unknown_2", "why", vec![])).is_ok());
    }

    #[test]
    fn answers_breaking_the_contract_are_bad() {
        let bad = [
            deny("", "why", vec![]),
            deny("Upper", "why", vec![]),
            deny("with space", "why", vec![]),
            deny(&"a".repeat(65), "why", vec![]),
            deny("ok", "", vec![]),
            deny("ok", &"r".repeat(1025), vec![]),
            deny("ok", "why", vec!["w".into(); 17]),
            WitDecision::Allow(vec!["w".repeat(513)]),
        ];
        for answer in bad {
            let shown = format!("{answer:?}");
            assert!(
                matches!(validate(answer), Err(EvalError::BadAnswer { .. })),
                "{shown}"
            );
        }
    }
}
