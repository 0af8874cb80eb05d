//! `WasmPolicyEngine`: the `PolicyEngine` of the gateway.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use chrono::Utc;
use snapgate_core::ports::{Decision, PolicyEngine, PolicyInput, PolicyOutcome};
use tokio::sync::Semaphore;
use wasmtime::Engine;

use crate::chain::{Chain, ChainInfo, SharedChain, PLUGIN_FAILED_CODE};
use crate::error::LoadError;
use crate::plugin::LoadedPlugin;
use crate::pool::{start_refiller, wake_channel, InstancePool, PrewarmBudget};
use crate::runtime::{build_engine, EpochTicker, MAX_PREWARMED_INSTANCES};
use crate::spec::{PluginSpec, PolicyLimits};

/// Evaluates the configured chain of WebAssembly plugins. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct WasmPolicyEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    limits: PolicyLimits,
    /// The chain serving requests. The lock is held only to clone or replace the `Arc`.
    chain: RwLock<SharedChain>,
    /// One reload at a time, so generations stay in order.
    reload_lock: Mutex<()>,
    generation: AtomicU64,
    /// Evaluations running at once, at most one per core. The deadline is wall-clock time:
    /// evaluations time-slicing one core would eat each other's budget, while waiting here
    /// does not count against it.
    running: Semaphore,
    /// Shared by the pools of every chain of this engine.
    prewarm_budget: PrewarmBudget,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for WasmPolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPolicyEngine")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl WasmPolicyEngine {
    /// Builds the engine and loads every plugin. Compiling is CPU work of up to a second per
    /// plugin without a cache: call it at startup or from a blocking thread.
    pub fn load(specs: Vec<PluginSpec>, limits: PolicyLimits) -> Result<Self, LoadError> {
        let engine = build_engine(&limits)?;
        let prewarm_budget = PrewarmBudget::new(MAX_PREWARMED_INSTANCES);
        let chain = build_chain(&engine, specs, &limits, 1, &prewarm_budget)?;
        let ticker = EpochTicker::start(engine.clone())?;
        Ok(WasmPolicyEngine {
            inner: Arc::new(Inner {
                engine,
                limits,
                chain: RwLock::new(chain),
                reload_lock: Mutex::new(()),
                generation: AtomicU64::new(1),
                running: Semaphore::new(
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                ),
                prewarm_budget,
                _ticker: ticker,
            }),
        })
    }

    /// Builds a whole new chain from `specs`, then swaps it in at once. On error the old
    /// chain keeps serving. Requests already running finish on the chain they started with.
    /// Blocking (compiles): from async code use [`WasmPolicyEngine::reload_async`].
    pub fn reload(&self, specs: Vec<PluginSpec>) -> Result<ChainInfo, LoadError> {
        let _one_at_a_time = self
            .inner
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = self.inner.generation.load(Ordering::SeqCst) + 1;
        let chain = build_chain(
            &self.inner.engine,
            specs,
            &self.inner.limits,
            generation,
            &self.inner.prewarm_budget,
        )
        .inspect_err(|e| tracing::error!(error = %e, "policy chain reload failed; the previous chain keeps serving"))?;
        let info = chain.info();
        *self
            .inner
            .chain
            .write()
            .unwrap_or_else(PoisonError::into_inner) = chain;
        self.inner.generation.store(generation, Ordering::SeqCst);
        tracing::info!(
            generation,
            plugins = info.plugins.len(),
            "policy chain reloaded"
        );
        Ok(info)
    }

    /// [`WasmPolicyEngine::reload`] on a blocking thread.
    pub async fn reload_async(&self, specs: Vec<PluginSpec>) -> Result<ChainInfo, LoadError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reload(specs))
            .await
            .map_err(|e| LoadError::Engine(format!("reload task failed: {e}")))?
    }

    /// The plugins serving now, with their sha256 and counters (for the admin endpoint).
    pub fn chain_info(&self) -> ChainInfo {
        self.current().info()
    }

    pub fn limits(&self) -> &PolicyLimits {
        &self.inner.limits
    }

    /// Evaluates on the calling thread. CPU work (tens of µs per plugin): async callers use
    /// the [`PolicyEngine`] impl, which keeps it off the async workers.
    pub fn evaluate_blocking(&self, input: &PolicyInput) -> PolicyOutcome {
        self.current().evaluate(input)
    }

    fn current(&self) -> SharedChain {
        self.inner
            .chain
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl PolicyEngine for WasmPolicyEngine {
    fn wants(&self, operation: snapgate_core::OperationKind) -> bool {
        self.current()
            .plugins
            .iter()
            .any(|p| p.spec.applies_to(operation))
    }

    async fn evaluate(&self, input: &PolicyInput) -> PolicyOutcome {
        // Take the chain now: a reload during the evaluation does not change it.
        let chain = self.current();
        if !chain
            .plugins
            .iter()
            .any(|p| p.spec.applies_to(input.operation))
        {
            return PolicyOutcome::default();
        }
        let Ok(_slot) = self.inner.running.acquire().await else {
            // The semaphore is never closed; fail closed rather than panic if it ever is.
            return failed_closed("policy evaluation slots closed".into());
        };
        // The chain is CPU work bounded by each plugin's deadline, but a runaway plugin must
        // not stall the async workers for that long. On the multi-thread runtime the request's
        // own thread runs it and hands its worker role to another thread meanwhile
        // (`block_in_place`): no hop to a parked blocking thread and back on the request path.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let result = if multi_thread {
            tokio::task::block_in_place(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chain.evaluate(input)))
            })
            .map_err(|panic| panic_message(&*panic))
        } else {
            let owned = input.clone();
            tokio::task::spawn_blocking(move || chain.evaluate(&owned))
                .await
                .map_err(|e| e.to_string())
        };
        match result {
            Ok(outcome) => outcome,
            Err(e) => {
                // Only a bug in the host gets here (plugins cannot panic the host): fail closed.
                tracing::error!(error = %e, "policy evaluation failed");
                failed_closed(format!("policy evaluation failed: {e}"))
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic in the policy host".to_owned())
}

fn failed_closed(reason: String) -> PolicyOutcome {
    let decision = Decision {
        plugin: "snapgate-policy".into(),
        plugin_sha256: String::new(),
        mode: "enforce".into(),
        outcome: "error".into(),
        overridden: false,
        code: Some(PLUGIN_FAILED_CODE.into()),
        reason: Some(reason.clone()),
        warnings: Vec::new(),
        latency_us: 0,
    };
    PolicyOutcome {
        denial: Some((decision.plugin.clone(), PLUGIN_FAILED_CODE.into(), reason)),
        warnings: Vec::new(),
        decisions: vec![decision],
    }
}

/// Loads the plugins and starts the chain's refiller (when pools are on). The chain's pools
/// and refiller live and die with the returned chain.
fn build_chain(
    engine: &Engine,
    specs: Vec<PluginSpec>,
    limits: &PolicyLimits,
    generation: u64,
    prewarm_budget: &PrewarmBudget,
) -> Result<SharedChain, LoadError> {
    let mut seen = HashSet::new();
    for spec in &specs {
        if !seen.insert(spec.name.as_str()) {
            return Err(LoadError::DuplicateName(spec.name.clone()));
        }
    }
    let mut plugins = specs
        .into_iter()
        .map(|spec| LoadedPlugin::load(engine, spec, limits))
        .collect::<Result<Vec<_>, _>>()?;
    let refiller = if limits.prewarm_instances > 0 && !plugins.is_empty() {
        let (wake, woken) = wake_channel();
        for plugin in &mut plugins {
            plugin.pool = InstancePool::new(limits.prewarm_instances, wake.clone());
        }
        Some(woken)
    } else {
        None
    };
    let chain = Arc::new(Chain {
        generation,
        loaded_at: Utc::now(),
        plugins,
    });
    if let Some(woken) = refiller {
        start_refiller(&chain, woken, prewarm_budget.clone())?;
    }
    Ok(chain)
}
