//! The one wasmtime `Engine` of a policy engine, and the thread that drives its epoch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::LoadError;
use crate::spec::PolicyLimits;

/// Interval between epoch increments: the granularity of plugin deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Instances alive at once across all plugins (one per plugin evaluation in flight). Beyond
/// this an instantiation fails and the plugin's `on_error` applies; the service's own
/// concurrency limit is far below it.
const MAX_CONCURRENT_INSTANCES: u32 = 256;

/// Of those, at most this many wait pre-instantiated in pools (all chains of the engine, the
/// old and the new one during a reload): the rest stay free for evaluations in flight.
pub(crate) const MAX_PREWARMED_INSTANCES: usize = MAX_CONCURRENT_INSTANCES as usize / 2;

/// A Rust guest component holds a handful of core instances (the module plus the shims
/// `wit-component` adds for lowered imports).
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 16;

/// Builds the engine: component model, epoch interruption, pooling allocator whose memory
/// slots are exactly the memory cap (so a slot reserves little address space and a guest can
/// never grow past it, whatever the store limiter says).
pub(crate) fn build_engine(limits: &PolicyLimits) -> Result<Engine, LoadError> {
    if limits.memory_bytes < (1 << 20) {
        return Err(LoadError::BadSpec(format!(
            "memory_bytes {} is below the 1 MiB a Rust guest needs for its stack",
            limits.memory_bytes
        )));
    }
    if limits.prewarm_instances > PolicyLimits::MAX_PREWARM_INSTANCES {
        return Err(LoadError::BadSpec(format!(
            "prewarm_instances {} is above the maximum of {}",
            limits.prewarm_instances,
            PolicyLimits::MAX_PREWARM_INSTANCES
        )));
    }
    if limits.deadline.is_zero() {
        return Err(LoadError::BadSpec("deadline must be above zero".into()));
    }
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(MAX_CONCURRENT_INSTANCES)
        .total_core_instances(MAX_CONCURRENT_INSTANCES * MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_memories(MAX_CONCURRENT_INSTANCES)
        .total_tables(MAX_CONCURRENT_INSTANCES * 2)
        .max_memories_per_component(2)
        .max_memory_size(limits.memory_bytes)
        // Reset a used slot by rewriting only the pages the guest dirtied (Linux >= 6.7
        // PAGEMAP_SCAN; elsewhere wasmtime falls back to madvise) instead of dropping and
        // faulting them back in: the bulk of a fresh instance's cost. Measured in
        // docs/BENCHMARKS.md.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(limits.memory_bytes)
        .table_keep_resident(64 << 10);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // Slot = cap: explicit bounds checks instead of 4 GiB reservations per slot.
        .memory_reservation(limits.memory_bytes as u64)
        .memory_guard_size(64 << 10)
        .memory_reservation_for_growth(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))
}

/// Increments the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> Result<Self, LoadError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        // A plain thread, not a tokio task: the ticker must run while every runtime worker
        // is busy, and it must not need a runtime at all (the CLI's `eval_once`).
        let thread = std::thread::Builder::new()
            .name("snapgate-policy-epoch".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Epoch ticks that cover `deadline`: rounded up, plus one because the current tick may be
/// about to end.
pub(crate) fn deadline_ticks(deadline: Duration) -> u64 {
    let tick = EPOCH_TICK.as_micros().max(1);
    let ticks = deadline.as_micros().div_ceil(tick) as u64;
    ticks.max(1) + 1
}
