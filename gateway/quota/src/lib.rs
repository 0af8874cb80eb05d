//! Per-tenant quota stores, the two implementations of [`snapgate_core::ports::QuotaStore`]:
//!
//! - [`RedisQuotaStore`]: shared by every gateway; one Lua script per decision (files in
//!   `src/lua/`), each touching only the keys of one tenant (one hash slot).
//! - [`MemoryQuotaStore`]: for a single gateway with no Redis configured.
//!
//! Both make the decisions of [`QuotaBook`], the plain-Rust model the tests hold the scripts to.
//!
//! Semantics both follow, beyond the trait's documentation:
//! - Only the resources an operation asks for (> 0) are checked against their limits.
//! - A save over the hourly rate is `RateLimited` with the seconds until enough saves leave the
//!   window; a request for more saves than the limit itself is `Exceeded` (waiting won't help).
//! - A released save leaves the hourly window: failed saves do not count toward the rate.
//!   A lapsed lease is treated like a release.
//! - Commit, release and free leave a marker for [`DEFAULT_MARKER_TTL`], so retries are no-ops
//!   and a late reserve retry of an ended operation reserves nothing.
//! - Renewing a lease that lapsed or never existed logs a warning and succeeds: the trait has no
//!   error for it, and the operation's outcome is still counted correctly by commit (which
//!   counts nothing without a reservation; the next rebuild repairs in-use from the database).

mod book;
mod markers;
mod memory;
mod outcome;
mod redis_store;

use std::time::Duration;

use uuid::Uuid;

pub use book::{QuotaBook, HOUR_MS};
pub use memory::MemoryQuotaStore;
pub use outcome::{EndOutcome, FreeOutcome, RebuildReport, RenewOutcome, ReserveOutcome, Tally};
pub use redis_store::{tenant_key_part, RedisQuotaConfig, RedisQuotaStore};

/// How long commit/release/free markers make retries of the same operation no-ops.
pub const DEFAULT_MARKER_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a rebuild keeps a reservation whose operation the database does not show. A save
/// reserves its units before its accepting write reaches the database; a rebuild that read the
/// database in between must not free those units (another save would take them while this one
/// is accepted: one save over the limit). A minute covers any accept that can still succeed; a
/// reservation whose operation never appears is released by its request or lapses with its lease.
pub const DEFAULT_RESERVATION_GRACE: Duration = Duration::from_secs(60);

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

pub(crate) fn log_renew(tenant: &str, operation: Uuid, outcome: RenewOutcome) {
    if outcome == RenewOutcome::NoLease {
        tracing::warn!(tenant, %operation, "quota lease lapsed or unknown; not renewed");
    }
}

pub(crate) fn log_end(what: &str, tenant: &str, operation: Uuid, outcome: EndOutcome) {
    match outcome {
        EndOutcome::Done => {}
        EndOutcome::AlreadyEnded => {
            tracing::debug!(tenant, %operation, what, "operation already ended; retry ignored")
        }
        EndOutcome::NoReservation => {
            tracing::warn!(tenant, %operation, what, "no quota reservation held; nothing counted")
        }
    }
}
