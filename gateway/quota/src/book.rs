//! `QuotaBook`: the quota decisions as plain Rust over plain data, with time passed in.
//!
//! The in-process store wraps one book in a mutex. The Lua scripts of the Redis store make the
//! same decisions; the tests drive both with the same random operations and compare every
//! answer, so the book is also the reference model of the scripts.

use std::collections::HashMap;

use snapgate_core::ports::{
    QuotaError, QuotaLimits, QuotaReservation, QuotaResource, RecentSave, TenantTotals,
};
use uuid::Uuid;

use crate::markers::Markers;
use crate::outcome::{EndOutcome, FreeOutcome, RebuildReport, RenewOutcome, ReserveOutcome, Tally};

/// Length of the saves-per-hour window.
pub const HOUR_MS: i64 = 3_600_000;

/// What one lease holds. A lease lapses at `expires_ms` unless renewed, committed or released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    states: i64,
    bytes: i64,
    operations: i64,
    saves: i64,
    expires_ms: i64,
    /// When the reservation was made: a rebuild keeps leases younger than its grace.
    created_ms: i64,
}

#[derive(Debug, Default)]
struct TenantBook {
    states: i64,
    bytes: i64,
    leases: HashMap<Uuid, Lease>,
    /// Saves of the last hour (committed and reserved), oldest first.
    saves: Vec<(i64, Uuid)>,
    /// Operations that committed or released.
    ended: Markers,
    /// Delete operations already subtracted.
    freed: Markers,
}

impl TenantBook {
    /// Drops lapsed leases (with their saves) and saves older than an hour.
    fn normalize(&mut self, now_ms: i64) {
        let lapsed: Vec<(Uuid, Lease)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires_ms <= now_ms)
            .map(|(op, l)| (*op, *l))
            .collect();
        for (op, _) in lapsed {
            self.drop_lease(op);
        }
        let cutoff = now_ms - HOUR_MS;
        let old = self.saves.partition_point(|(at, _)| *at <= cutoff);
        self.saves.drain(..old);
    }

    fn add_lease(&mut self, op: Uuid, want: Want, expires_ms: i64, now_ms: i64) {
        let lease = Lease {
            states: want.states,
            bytes: want.bytes,
            operations: want.operations,
            saves: want.saves,
            expires_ms,
            created_ms: now_ms,
        };
        self.leases.insert(op, lease);
        if want.saves > 0 {
            // Saves are keyed by operation (in Redis: members "<op>#<n>"): a save already in
            // the window for this operation (put back by a rebuild) moves to now, as ZADD
            // moves a member, rather than counting twice.
            self.saves.retain(|(_, o)| *o != op);
        }
        let at = self.saves.partition_point(|(when, _)| *when <= now_ms);
        for _ in 0..want.saves {
            self.saves.insert(at, (now_ms, op));
        }
    }

    /// Puts a committed save back in the window at `at_ms`, unless the window holds it already
    /// (saves are keyed by operation) or it is older than an hour.
    fn restore_save(&mut self, op: Uuid, at_ms: i64, now_ms: i64) -> bool {
        if at_ms <= now_ms - HOUR_MS || self.saves.iter().any(|(_, o)| *o == op) {
            return false;
        }
        let at = self.saves.partition_point(|(when, _)| *when <= at_ms);
        self.saves.insert(at, (at_ms, op));
        true
    }

    fn drop_lease(&mut self, op: Uuid) -> Option<Lease> {
        let lease = self.leases.remove(&op)?;
        if lease.saves > 0 {
            self.saves.retain(|(_, o)| *o != op);
        }
        Some(lease)
    }

    fn tally(&self) -> Tally {
        let mut t = Tally {
            states: self.states,
            bytes: self.bytes,
            window: self.saves.len() as i64,
            ..Tally::default()
        };
        for l in self.leases.values() {
            t.reserved_states += l.states;
            t.reserved_bytes += l.bytes;
            t.reserved_operations += l.operations;
            t.reserved_saves += l.saves;
        }
        t
    }
}

/// Every tenant's quota state, in memory.
#[derive(Debug)]
pub struct QuotaBook {
    tenants: HashMap<String, TenantBook>,
    marker_ttl_ms: i64,
    /// See [`crate::DEFAULT_RESERVATION_GRACE`].
    reservation_grace_ms: i64,
    primed: bool,
}

impl QuotaBook {
    /// `marker_ttl_ms`: how long "this operation ended" markers make retries no-ops.
    pub fn new(marker_ttl_ms: i64) -> Self {
        Self {
            tenants: HashMap::new(),
            marker_ttl_ms,
            reservation_grace_ms: crate::duration_ms(crate::DEFAULT_RESERVATION_GRACE),
            primed: false,
        }
    }

    /// How young a reservation the database does not show yet must be for a rebuild to keep it.
    pub fn with_reservation_grace_ms(mut self, grace_ms: i64) -> Self {
        self.reservation_grace_ms = grace_ms;
        self
    }

    fn tenant(&mut self, tenant: &str) -> &mut TenantBook {
        self.tenants.entry(tenant.to_owned()).or_default()
    }

    pub fn reserve(
        &mut self,
        r: &QuotaReservation,
        limits: &QuotaLimits,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<ReserveOutcome, QuotaError> {
        let want = Want::of(r);
        let t = self.tenant(&r.tenant);
        if t.ended.contains(r.operation, now_ms) {
            return Ok(ReserveOutcome::OperationEnded);
        }
        t.normalize(now_ms);
        if t.leases.contains_key(&r.operation) {
            return Ok(ReserveOutcome::AlreadyReserved);
        }
        judge(t, want, limits, now_ms)?;
        t.add_lease(r.operation, want, now_ms + lease_ms, now_ms);
        Ok(ReserveOutcome::Reserved)
    }

    /// Whether `reserve` would accept `r` now, changing nothing: lapsed leases and old saves
    /// are left in place but not counted, as `reserve` would drop them first.
    pub fn check(
        &self,
        r: &QuotaReservation,
        limits: &QuotaLimits,
        now_ms: i64,
    ) -> Result<(), QuotaError> {
        let empty = TenantBook::default();
        let t = self.tenants.get(&r.tenant).unwrap_or(&empty);
        if t.leases.contains_key(&r.operation) {
            return Ok(());
        }
        judge(t, Want::of(r), limits, now_ms)
    }

    pub fn renew(
        &mut self,
        tenant: &str,
        operation: Uuid,
        lease_ms: i64,
        now_ms: i64,
    ) -> RenewOutcome {
        let t = self.tenant(tenant);
        match t.leases.get_mut(&operation) {
            None if t.ended.contains(operation, now_ms) => RenewOutcome::OperationEnded,
            None => RenewOutcome::NoLease,
            Some(lease) if lease.expires_ms <= now_ms => {
                t.drop_lease(operation);
                RenewOutcome::NoLease
            }
            Some(lease) => {
                lease.expires_ms = now_ms + lease_ms;
                RenewOutcome::Renewed
            }
        }
    }

    pub fn commit(
        &mut self,
        tenant: &str,
        operation: Uuid,
        actual_bytes: Option<i64>,
        now_ms: i64,
    ) -> EndOutcome {
        let ttl = self.marker_ttl_ms;
        let t = self.tenant(tenant);
        if t.ended.contains(operation, now_ms) {
            return EndOutcome::AlreadyEnded;
        }
        t.ended.insert(operation, now_ms + ttl);
        // Its saves stay in the window: take the lease out without `drop_lease`.
        let Some(lease) = t.leases.remove(&operation) else {
            return EndOutcome::NoReservation;
        };
        t.states += lease.states;
        t.bytes += actual_bytes.map_or(lease.bytes, |b| b.max(0));
        EndOutcome::Done
    }

    pub fn release(&mut self, tenant: &str, operation: Uuid, now_ms: i64) -> EndOutcome {
        let ttl = self.marker_ttl_ms;
        let t = self.tenant(tenant);
        if t.ended.contains(operation, now_ms) {
            return EndOutcome::AlreadyEnded;
        }
        t.ended.insert(operation, now_ms + ttl);
        match t.drop_lease(operation) {
            Some(_) => EndOutcome::Done,
            None => EndOutcome::NoReservation,
        }
    }

    pub fn free(
        &mut self,
        tenant: &str,
        operation: Uuid,
        states: i64,
        bytes: i64,
        now_ms: i64,
    ) -> FreeOutcome {
        let ttl = self.marker_ttl_ms;
        let t = self.tenant(tenant);
        if t.freed.contains(operation, now_ms) {
            return FreeOutcome::AlreadyFreed;
        }
        t.freed.insert(operation, now_ms + ttl);
        t.states = (t.states - states.max(0)).max(0);
        t.bytes = (t.bytes - bytes.max(0)).max(0);
        FreeOutcome::Freed
    }

    pub fn tally(&mut self, tenant: &str, now_ms: i64) -> Tally {
        match self.tenants.get_mut(tenant) {
            Some(t) => {
                t.normalize(now_ms);
                t.tally()
            }
            None => Tally::default(),
        }
    }

    /// In-use becomes `totals` (zero for tenants absent from it); reservations become exactly
    /// `live`: live leases already held are kept as they are, others are dropped unless younger
    /// than the reservation grace (their accepting write may not have reached the database
    /// read this rebuild writes), missing ones are recreated with `lease_ms` (unless the operation already ended here). The committed
    /// `saves` missing from the hourly window are put back at their start time.
    pub fn rebuild(
        &mut self,
        totals: &[TenantTotals],
        saves: &[RecentSave],
        live: &[QuotaReservation],
        lease_ms: i64,
        now_ms: i64,
    ) -> RebuildReport {
        let mut wanted: HashMap<&str, Vec<&QuotaReservation>> = HashMap::new();
        for r in live {
            wanted.entry(r.tenant.as_str()).or_default().push(r);
        }
        let mut committed: HashMap<&str, Vec<&RecentSave>> = HashMap::new();
        for s in saves {
            committed.entry(s.tenant.as_str()).or_default().push(s);
        }
        let by_tenant: HashMap<&str, &TenantTotals> =
            totals.iter().map(|t| (t.tenant.as_str(), t)).collect();
        for name in totals
            .iter()
            .map(|t| &t.tenant)
            .chain(live.iter().map(|r| &r.tenant))
            .chain(saves.iter().map(|s| &s.tenant))
        {
            self.tenant(name);
        }
        let mut report = RebuildReport::default();
        for (name, t) in self.tenants.iter_mut() {
            t.normalize(now_ms);
            let mine = wanted.get(name.as_str()).map_or(&[][..], Vec::as_slice);
            let grace_ms = self.reservation_grace_ms;
            let succeeded = committed.get(name.as_str()).map_or(&[][..], Vec::as_slice);
            // A save the database shows succeeded has ended however young its lease; any
            // other lease the database does not show is kept while younger than the grace.
            let stale: Vec<Uuid> = t
                .leases
                .iter()
                .filter(|(op, lease)| {
                    !mine.iter().any(|r| r.operation == **op)
                        && (succeeded.iter().any(|s| s.operation == **op)
                            || now_ms - lease.created_ms >= grace_ms)
                })
                .map(|(op, _)| *op)
                .collect();
            for op in stale {
                t.drop_lease(op);
                report.dropped += 1;
            }
            for r in mine {
                if t.leases.contains_key(&r.operation) || t.ended.contains(r.operation, now_ms) {
                    continue;
                }
                t.add_lease(r.operation, Want::of(r), now_ms + lease_ms, now_ms);
                report.recreated += 1;
            }
            // After the leases: a save the database shows succeeded whose lease was just
            // dropped (its commit here lags) goes back in as committed.
            for s in committed.get(name.as_str()).map_or(&[][..], Vec::as_slice) {
                if t.restore_save(s.operation, s.at.timestamp_millis(), now_ms) {
                    report.restored_saves += 1;
                }
            }
            let (states, bytes) = by_tenant
                .get(name.as_str())
                .map_or((0, 0), |t| (t.states.max(0), t.bytes.max(0)));
            t.states = states;
            t.bytes = bytes;
        }
        self.primed = true;
        report
    }

    pub fn is_primed(&self) -> bool {
        self.primed
    }
}

/// The reserve decision over a tenant's book, read-only: leases lapsed at `now_ms` and saves
/// older than the hour are not counted (whether or not they were dropped yet). Only what the
/// operation asks for is checked (see reserve.lua).
fn judge(t: &TenantBook, want: Want, limits: &QuotaLimits, now_ms: i64) -> Result<(), QuotaError> {
    let live = |op: &Uuid| t.leases.get(op).is_some_and(|l| l.expires_ms > now_ms);
    let mut tally = Tally {
        states: t.states,
        bytes: t.bytes,
        ..Tally::default()
    };
    for (_, l) in t.leases.iter().filter(|(op, _)| live(op)) {
        tally.reserved_states += l.states;
        tally.reserved_bytes += l.bytes;
        tally.reserved_operations += l.operations;
        tally.reserved_saves += l.saves;
    }
    let checks = [
        (
            QuotaResource::States,
            tally.states,
            tally.reserved_states,
            want.states,
        ),
        (
            QuotaResource::StateBytes,
            tally.bytes,
            tally.reserved_bytes,
            want.bytes,
        ),
        (
            QuotaResource::ConcurrentOperations,
            0,
            tally.reserved_operations,
            want.operations,
        ),
    ];
    for (resource, in_use, reserved, requested) in checks {
        let limit = limits.get(resource);
        if requested > 0 && limit >= 0 && in_use + reserved + requested > limit {
            return Err(QuotaError::Exceeded {
                resource,
                limit,
                in_use,
                reserved,
                requested,
            });
        }
    }

    let limit = limits.saves_per_hour;
    if want.saves > 0 && limit >= 0 {
        // Saves of the window, oldest first: committed ones (no lease) and those of live
        // leases. Listed only here, where a rate limit applies: the list is as long as the
        // tenant's saves of the last hour, and building it on every reservation made each one
        // cost O(saves of the hour) (docs/BENCHMARKS.md, "States API latency").
        let cutoff = now_ms - HOUR_MS;
        let window: Vec<i64> = t
            .saves
            .iter()
            .filter(|(at, op)| *at > cutoff && (!t.leases.contains_key(op) || live(op)))
            .map(|(at, _)| *at)
            .collect();
        tally.window = window.len() as i64;
        if want.saves > limit {
            return Err(QuotaError::Exceeded {
                resource: QuotaResource::SavesPerHour,
                limit,
                in_use: tally.window - tally.reserved_saves,
                reserved: tally.reserved_saves,
                requested: want.saves,
            });
        }
        let must_leave = tally.window + want.saves - limit;
        if must_leave > 0 {
            let at = window[(must_leave - 1) as usize];
            return Err(QuotaError::RateLimited {
                retry_after_secs: ceil_secs(at + HOUR_MS - now_ms),
            });
        }
    }
    Ok(())
}

/// A reservation with negative amounts clamped to zero: a negative request would free units.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Want {
    pub states: i64,
    pub bytes: i64,
    pub operations: i64,
    pub saves: i64,
}

impl Want {
    pub fn of(r: &QuotaReservation) -> Self {
        Self {
            states: r.states.max(0),
            bytes: r.bytes.max(0),
            operations: r.operations.max(0),
            saves: r.saves.max(0),
        }
    }
}

/// Whole seconds until `millis` have passed, at least 1 (a client told "0" would spin).
pub(crate) fn ceil_secs(millis: i64) -> u64 {
    let secs = (millis + 999).div_euclid(1000);
    secs.max(1) as u64
}
