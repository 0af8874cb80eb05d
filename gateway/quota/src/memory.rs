//! `MemoryQuotaStore`: quotas inside one gateway process, for a deployment without Redis.
//! Same semantics as the Redis store (both make their decisions like [`QuotaBook`]); nothing
//! survives a restart, so it reports "not primed" until the first rebuild.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use snapgate_core::ports::{
    QuotaError, QuotaLimits, QuotaReservation, QuotaStore, QuotaUsage, RecentSave, TenantTotals,
};
use uuid::Uuid;

use crate::book::QuotaBook;
use crate::outcome::{EndOutcome, FreeOutcome, RebuildReport, RenewOutcome, ReserveOutcome};
use crate::{duration_ms, DEFAULT_MARKER_TTL};

#[derive(Debug)]
pub struct MemoryQuotaStore {
    book: Mutex<QuotaBook>,
    clock: MonotonicClock,
}

impl Default for MemoryQuotaStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryQuotaStore {
    pub fn new() -> Self {
        Self::with_marker_ttl(DEFAULT_MARKER_TTL)
    }

    /// `marker_ttl`: how long a committed, released or freed operation id stays remembered so
    /// that retries of it are no-ops.
    pub fn with_marker_ttl(marker_ttl: Duration) -> Self {
        Self {
            book: Mutex::new(QuotaBook::new(duration_ms(marker_ttl))),
            clock: MonotonicClock::new(),
        }
    }

    /// See [`crate::DEFAULT_RESERVATION_GRACE`]; tests of the rebuild's dropping use zero.
    pub fn with_reservation_grace(self, grace: Duration) -> Self {
        let book = self
            .book
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .with_reservation_grace_ms(duration_ms(grace));
        Self {
            book: Mutex::new(book),
            clock: self.clock,
        }
    }

    fn book(&self) -> MutexGuard<'_, QuotaBook> {
        // A panic while holding the lock cannot leave the book half-updated in a way that
        // matters more than losing quotas altogether, so keep serving.
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn reserve_outcome(
        &self,
        r: &QuotaReservation,
        limits: &QuotaLimits,
        lease: Duration,
    ) -> Result<ReserveOutcome, QuotaError> {
        let now = self.clock.now_ms();
        self.book().reserve(r, limits, duration_ms(lease), now)
    }

    pub fn renew_outcome(&self, tenant: &str, operation: Uuid, lease: Duration) -> RenewOutcome {
        let now = self.clock.now_ms();
        self.book()
            .renew(tenant, operation, duration_ms(lease), now)
    }

    pub fn commit_outcome(
        &self,
        tenant: &str,
        operation: Uuid,
        actual_bytes: Option<i64>,
    ) -> EndOutcome {
        let now = self.clock.now_ms();
        self.book().commit(tenant, operation, actual_bytes, now)
    }

    pub fn release_outcome(&self, tenant: &str, operation: Uuid) -> EndOutcome {
        let now = self.clock.now_ms();
        self.book().release(tenant, operation, now)
    }

    pub fn free_outcome(
        &self,
        tenant: &str,
        operation: Uuid,
        states: i64,
        bytes: i64,
    ) -> FreeOutcome {
        let now = self.clock.now_ms();
        self.book().free(tenant, operation, states, bytes, now)
    }

    pub fn rebuild_report(
        &self,
        totals: &[TenantTotals],
        saves: &[RecentSave],
        live: &[QuotaReservation],
        lease: Duration,
    ) -> RebuildReport {
        let now = self.clock.now_ms();
        self.book()
            .rebuild(totals, saves, live, duration_ms(lease), now)
    }
}

#[async_trait]
impl QuotaStore for MemoryQuotaStore {
    async fn reserve(
        &self,
        r: &QuotaReservation,
        limits: &QuotaLimits,
        lease: Duration,
    ) -> Result<(), QuotaError> {
        self.reserve_outcome(r, limits, lease).map(|_| ())
    }

    async fn check(&self, r: &QuotaReservation, limits: &QuotaLimits) -> Result<(), QuotaError> {
        let now = self.clock.now_ms();
        self.book().check(r, limits, now)
    }

    async fn renew(
        &self,
        tenant: &str,
        operation: Uuid,
        lease: Duration,
    ) -> Result<(), QuotaError> {
        crate::log_renew(
            tenant,
            operation,
            self.renew_outcome(tenant, operation, lease),
        );
        Ok(())
    }

    async fn commit(
        &self,
        tenant: &str,
        operation: Uuid,
        actual_bytes: Option<i64>,
    ) -> Result<(), QuotaError> {
        crate::log_end(
            "commit",
            tenant,
            operation,
            self.commit_outcome(tenant, operation, actual_bytes),
        );
        Ok(())
    }

    async fn release(&self, tenant: &str, operation: Uuid) -> Result<(), QuotaError> {
        crate::log_end(
            "release",
            tenant,
            operation,
            self.release_outcome(tenant, operation),
        );
        Ok(())
    }

    async fn free(
        &self,
        tenant: &str,
        operation: Uuid,
        states: i64,
        bytes: i64,
    ) -> Result<(), QuotaError> {
        self.free_outcome(tenant, operation, states, bytes);
        Ok(())
    }

    async fn usage(&self, tenant: &str, limits: &QuotaLimits) -> Result<QuotaUsage, QuotaError> {
        let now = self.clock.now_ms();
        Ok(self.book().tally(tenant, now).usage(limits))
    }

    async fn rebuild(
        &self,
        totals: &[TenantTotals],
        saves: &[RecentSave],
        live: &[QuotaReservation],
        lease: Duration,
    ) -> Result<(), QuotaError> {
        let report = self.rebuild_report(totals, saves, live, lease);
        tracing::info!(
            tenants = totals.len(),
            dropped = report.dropped,
            recreated = report.recreated,
            restored_saves = report.restored_saves,
            "in-process quotas rebuilt"
        );
        Ok(())
    }

    async fn is_primed(&self) -> Result<bool, QuotaError> {
        Ok(self.book().is_primed())
    }
}

/// Wall-clock milliseconds that never go back: leases and the hourly window must not jump
/// when NTP steps the system clock.
#[derive(Debug)]
struct MonotonicClock {
    start: Instant,
    start_ms: i64,
}

impl MonotonicClock {
    fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            start: Instant::now(),
            start_ms: duration_ms(since_epoch),
        }
    }

    fn now_ms(&self) -> i64 {
        self.start_ms + duration_ms(self.start.elapsed())
    }
}
