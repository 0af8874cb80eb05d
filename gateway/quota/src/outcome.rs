//! What a decision did, in more detail than the `QuotaStore` trait reports. Both stores return
//! these from their inherent methods, so tests can compare the Lua scripts with `QuotaBook`
//! answer by answer, and logs can tell a retry from a first call.

use snapgate_core::ports::{QuotaLimits, QuotaUsage, ResourceUsage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved,
    /// A retry: this operation holds a live reservation already.
    AlreadyReserved,
    /// A late retry: this operation committed or released already; nothing was reserved.
    OperationEnded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewOutcome {
    Renewed,
    /// The operation committed or released already.
    OperationEnded,
    /// No live lease: never reserved, or it lapsed (its units are free again).
    NoLease,
}

/// Outcome of commit and release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOutcome {
    Done,
    /// A retry: the operation had committed or released already.
    AlreadyEnded,
    /// No reservation was held (unknown, lapsed or dropped by a rebuild): nothing was counted.
    /// The operation is marked ended anyway, so a late reserve retry reserves nothing.
    NoReservation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeOutcome {
    Freed,
    AlreadyFreed,
}

/// What a rebuild changed in the reservations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub dropped: i64,
    pub recreated: i64,
    /// Committed saves of the last hour put back in the hourly window.
    pub restored_saves: i64,
}

/// Raw counts of one tenant, as the usage script returns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub states: i64,
    pub bytes: i64,
    pub reserved_states: i64,
    pub reserved_bytes: i64,
    pub reserved_operations: i64,
    pub reserved_saves: i64,
    /// Saves in the last hour, committed and reserved.
    pub window: i64,
}

impl Tally {
    /// Operations only ever hold reservations, so their `in_use` is 0 and `reserved` counts
    /// the running ones. Saves split into committed (`in_use`) and pending (`reserved`).
    pub fn usage(&self, limits: &QuotaLimits) -> QuotaUsage {
        QuotaUsage {
            states: ResourceUsage {
                limit: limits.states,
                in_use: self.states,
                reserved: self.reserved_states,
            },
            state_bytes: ResourceUsage {
                limit: limits.state_bytes,
                in_use: self.bytes,
                reserved: self.reserved_bytes,
            },
            concurrent_operations: ResourceUsage {
                limit: limits.concurrent_operations,
                in_use: 0,
                reserved: self.reserved_operations,
            },
            saves_per_hour: ResourceUsage {
                limit: limits.saves_per_hour,
                in_use: (self.window - self.reserved_saves).max(0),
                reserved: self.reserved_saves,
            },
        }
    }
}
