//! Pre-instantiated, never-used instances of each plugin, so a request pays for the plugin
//! call and not for instantiation.
//!
//! Isolation is unchanged: an instance is taken by exactly one request, used once and dropped
//! (never put back), so nothing one request or tenant leaves in a guest is seen by another.
//! A background thread per chain tops the pools up when one falls below its low-water mark;
//! an empty pool makes the request instantiate inline (as without pools), so a request never
//! waits for the refiller. The same thread drops used stores (returning their slot to the
//! pooling allocator resets the dirtied memory: also off the request path). It ends when its
//! chain is dropped (on reload or shutdown).
//!
//! A chain evaluation tells the refiller once, when it is done ([`Handoff`]): one message with
//! every used store, not one per plugin, so the request wakes the refiller's thread at most
//! once and the refiller's work (dropping, resetting, instantiating) does not run beside the
//! request's remaining plugins on a small machine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use wasmtime::Store;

use crate::bindings::PolicyInstance;
use crate::chain::Chain;
use crate::error::LoadError;
use crate::host::HostState;

/// Consecutive failed instantiations after which the refiller stops filling one plugin's pool
/// (the plugin then instantiates inline, where the failure is reported per request).
const MAX_REFILL_FAILURES: u32 = 3;

/// A fresh instance in its own store (with its limiter and empty log buffer), never called.
pub(crate) struct Prewarmed {
    pub store: Store<HostState>,
    pub instance: PolicyInstance,
    /// Holds one unit of the engine-wide [`PrewarmBudget`] while pooled.
    _budget: BudgetUnit,
}

/// Caps the pooled instances of all chains of one engine, so pools (old and new chain during
/// a reload included) never take the pooling allocator's slots that in-flight evaluations
/// need.
#[derive(Clone)]
pub(crate) struct PrewarmBudget {
    used: Arc<AtomicUsize>,
    cap: usize,
}

impl PrewarmBudget {
    pub(crate) fn new(cap: usize) -> Self {
        PrewarmBudget {
            used: Arc::new(AtomicUsize::new(0)),
            cap,
        }
    }

    fn acquire(&self) -> Option<BudgetUnit> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cap).then_some(n + 1)
            })
            .ok()
            .map(|_| BudgetUnit(self.used.clone()))
    }
}

struct BudgetUnit(Arc<AtomicUsize>);

impl Drop for BudgetUnit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a chain's refiller is asked to do. Either message makes it top the pools up after.
pub(crate) enum RefillerMessage {
    /// A pool fell below its low-water mark.
    Wake,
    /// Used stores to drop (never reused: dropping frees their instances' slots).
    Retire(Vec<Store<HostState>>),
}

/// What one chain evaluation leaves for the refiller: the used stores that came from pools and
/// whether a pool ran low. Sent in one message when dropped, at the end of the evaluation.
#[derive(Default)]
pub(crate) struct Handoff<'a> {
    refiller: Option<&'a SyncSender<RefillerMessage>>,
    stores: Vec<Store<HostState>>,
    wake: bool,
}

impl Drop for Handoff<'_> {
    fn drop(&mut self) {
        let Some(refiller) = self.refiller else {
            return;
        };
        let message = if !self.stores.is_empty() {
            RefillerMessage::Retire(std::mem::take(&mut self.stores))
        } else if self.wake {
            RefillerMessage::Wake
        } else {
            return;
        };
        // Full: the refiller is behind, so the stores are dropped here. Disconnected: the
        // refiller is gone (only when the chain is dropped); inline instantiation covers it.
        let _ = refiller.try_send(message);
    }
}

/// Pending messages before a used store is dropped inline instead of by the refiller.
const REFILLER_QUEUE: usize = 64;

/// The ready instances of one plugin.
pub(crate) struct InstancePool {
    ready: Mutex<Vec<Prewarmed>>,
    capacity: usize,
    low_water: usize,
    /// Wakes the chain's refiller; `None` when nothing refills (the CLI, or pools disabled).
    wake: Option<SyncSender<RefillerMessage>>,
}

impl InstancePool {
    /// A pool that stays empty: every evaluation instantiates inline.
    pub(crate) fn disabled() -> Self {
        InstancePool {
            ready: Mutex::new(Vec::new()),
            capacity: 0,
            low_water: 0,
            wake: None,
        }
    }

    pub(crate) fn new(capacity: usize, wake: SyncSender<RefillerMessage>) -> Self {
        InstancePool {
            ready: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
            // Refill in batches, not after every request: fewer wake-ups of the refiller.
            low_water: capacity.div_ceil(2),
            wake: (capacity > 0).then_some(wake),
        }
    }

    /// A ready instance, if any; asks `handoff` to wake the refiller when the pool runs low.
    pub(crate) fn take<'a>(
        &'a self,
        handoff: &mut Handoff<'a>,
    ) -> Option<(Store<HostState>, PolicyInstance)> {
        let wake = self.wake.as_ref()?;
        let (taken, left) = {
            let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
            let taken = ready.pop();
            (taken, ready.len())
        };
        if left < self.low_water {
            handoff.refiller = Some(wake);
            handoff.wake = true;
        }
        // The budget unit is released here: the instance leaves the pool.
        taken.map(|p| (p.store, p.instance))
    }

    /// Gives a used store that came from the pool to `handoff`, for the refiller to drop;
    /// drops it here when there is no refiller or the store was instantiated inline (the pool
    /// was empty: requests come faster than the refiller instantiates, and giving it the drops
    /// too would only slow it down further).
    pub(crate) fn retire<'a>(
        &'a self,
        store: Store<HostState>,
        from_pool: bool,
        handoff: &mut Handoff<'a>,
    ) {
        if let Some(wake) = self.wake.as_ref().filter(|_| from_pool) {
            handoff.refiller = Some(wake);
            handoff.stores.push(store);
        }
    }

    fn len(&self) -> usize {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn push(&self, ready: Prewarmed) {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ready);
    }
}

/// The channel to one chain's refiller.
pub(crate) fn wake_channel() -> (SyncSender<RefillerMessage>, Receiver<RefillerMessage>) {
    std::sync::mpsc::sync_channel(REFILLER_QUEUE)
}

/// Starts the refiller of `chain`. It holds only a `Weak` to the chain between rounds, and
/// ends when the chain is dropped (its pools, holding the senders, go with it).
pub(crate) fn start_refiller(
    chain: &Arc<Chain>,
    wake: Receiver<RefillerMessage>,
    budget: PrewarmBudget,
) -> Result<(), LoadError> {
    let weak: Weak<Chain> = Arc::downgrade(chain);
    std::thread::Builder::new()
        // Short: Linux shows 15 bytes of a thread's name (tests count these threads).
        .name(format!("prewarm-g{}", chain.generation))
        .spawn(move || {
            let mut failures = Vec::new();
            loop {
                {
                    let Some(chain) = weak.upgrade() else { return };
                    failures.resize(chain.plugins.len(), 0);
                    refill(&chain, &budget, &mut failures);
                }
                // Err: every sender is gone, so is the chain. A retired store is dropped as
                // its message is.
                let Ok(message) = wake.recv() else { return };
                handle(message);
                while let Ok(message) = wake.try_recv() {
                    handle(message);
                }
            }
        })
        .map_err(|e| LoadError::Engine(format!("cannot start the prewarm thread: {e}")))?;
    Ok(())
}

fn handle(message: RefillerMessage) {
    match message {
        RefillerMessage::Wake => {}
        RefillerMessage::Retire(stores) => drop(stores),
    }
}

/// Tops every pool up, one instance per plugin per round so that all plugins get some early.
fn refill(chain: &Chain, budget: &PrewarmBudget, failures: &mut [u32]) {
    loop {
        let mut added = false;
        for (plugin, failed) in chain.plugins.iter().zip(failures.iter_mut()) {
            let pool = &plugin.pool;
            if *failed >= MAX_REFILL_FAILURES || pool.wake.is_none() || pool.len() >= pool.capacity
            {
                continue;
            }
            let Some(unit) = budget.acquire() else { return };
            match plugin.instantiate(false) {
                Ok((store, instance)) => {
                    *failed = 0;
                    pool.push(Prewarmed {
                        store,
                        instance,
                        _budget: unit,
                    });
                    added = true;
                }
                Err((_, e)) => {
                    *failed += 1;
                    if *failed == MAX_REFILL_FAILURES {
                        tracing::warn!(plugin = %plugin.spec.name, error = %format!("{e:#}"), "cannot pre-instantiate the plugin; it instantiates per request from now on");
                    }
                }
            }
        }
        if !added {
            return;
        }
    }
}
