//! A short final pause for live external saves.
//!
//! A live external save is a migration to a file: the guest runs while QEMU copies its
//! memory, and QEMU stops it for the last pass once it expects that pass to take less than
//! the domain's migration downtime limit (300 ms by default). libvirt then finishes the
//! memory file and adds the disk overlays before the guest runs again. With a 1 GiB guest of
//! random data under TCG the last pass took ~230 ms at QEMU's default and ~18 ms at 20 ms
//! (docs/BENCHMARKS.md, "The guest's pause during a save").
//!
//! A lower limit means more passes before QEMU dares to stop the guest, and a guest that
//! dirties memory faster than the file is written would never get there. So the limit is
//! lowered only for the save, a watcher hands the domain's own limit back after
//! [`HAND_BACK_AFTER_PASSES`] passes (the save then ends as it would have without this), and
//! the domain's limit is restored when the save ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use virt::domain::Domain;

use crate::ffi;

/// The downtime limit during a live save.
pub(crate) const LIVE_SAVE_MAX_DOWNTIME: Duration = Duration::from_millis(20);
/// A quiet guest converges in 2–3 passes (the first copies everything); more means the guest
/// writes memory faster than the short limit allows.
const HAND_BACK_AFTER_PASSES: u64 = 5;
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Runs `save` (a live external snapshot of `dom`) with the short downtime limit, and puts
/// the domain's own limit back afterwards. Where libvirt cannot read or set the limit (the
/// test driver, an older daemon) the save runs unchanged.
pub(crate) fn with_short_final_pause<T>(dom: &Domain, save: impl FnOnce() -> T) -> T {
    let short = LIVE_SAVE_MAX_DOWNTIME.as_millis() as u64;
    let own = match ffi::migrate_max_downtime_ms(dom) {
        Ok(own) if own > short => own,
        Ok(_) => return save(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the migration downtime limit; saving with it as it is");
            return save();
        }
    };
    if let Err(e) = dom.migrate_set_max_downtime(short, 0) {
        tracing::debug!(error = %e, "cannot lower the migration downtime limit; saving with it as it is");
        return save();
    }
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| hand_back_if_not_converging(dom, own, &done));
        let result = save();
        done.store(true, Ordering::Release);
        watcher.thread().unpark();
        result
    });
    if let Err(e) = dom.migrate_set_max_downtime(own, 0) {
        tracing::warn!(error = %e, own_ms = own, "cannot restore the domain's migration downtime limit");
    }
    result
}

/// Watches the save's passes (libvirt's job statistics) and gives the domain its own limit
/// back when the save does not converge under the short one.
fn hand_back_if_not_converging(dom: &Domain, own_ms: u64, done: &AtomicBool) {
    loop {
        std::thread::park_timeout(WATCH_INTERVAL);
        if done.load(Ordering::Acquire) {
            return;
        }
        let passes = match ffi::job_stats(dom) {
            Ok(stats) => stats.memory_iteration.unwrap_or(0),
            Err(_) => continue,
        };
        if passes >= HAND_BACK_AFTER_PASSES {
            match dom.migrate_set_max_downtime(own_ms, 0) {
                Ok(_) => tracing::info!(
                    passes,
                    own_ms,
                    "live save not converging under the short downtime limit; using the domain's own"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot hand the downtime limit back"),
            }
            return;
        }
    }
}
