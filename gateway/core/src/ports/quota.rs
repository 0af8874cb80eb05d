//! Per-tenant quotas. The Redis implementation and the in-process one are in `snapgate-quota`.
//!
//! The database is the source of truth for what is *in use* (available and saving states); the
//! store holds that usage plus *reservations*: leases taken by operations that have not ended.
//! A reservation is keyed by its operation id so a retry never reserves twice.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::repository::{RecentSave, TenantTotals};

/// A quota resource, named as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaResource {
    States,
    StateBytes,
    ConcurrentOperations,
    SavesPerHour,
}

impl QuotaResource {
    pub const ALL: [QuotaResource; 4] = [
        QuotaResource::States,
        QuotaResource::StateBytes,
        QuotaResource::ConcurrentOperations,
        QuotaResource::SavesPerHour,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaResource::States => "states",
            QuotaResource::StateBytes => "state_bytes",
            QuotaResource::ConcurrentOperations => "concurrent_operations",
            QuotaResource::SavesPerHour => "saves_per_hour",
        }
    }
}

/// Limits of one tenant; `-1` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimits {
    pub states: i64,
    pub state_bytes: i64,
    pub concurrent_operations: i64,
    pub saves_per_hour: i64,
}

impl QuotaLimits {
    pub const UNLIMITED: QuotaLimits = QuotaLimits {
        states: -1,
        state_bytes: -1,
        concurrent_operations: -1,
        saves_per_hour: -1,
    };

    pub fn get(&self, r: QuotaResource) -> i64 {
        match r {
            QuotaResource::States => self.states,
            QuotaResource::StateBytes => self.state_bytes,
            QuotaResource::ConcurrentOperations => self.concurrent_operations,
            QuotaResource::SavesPerHour => self.saves_per_hour,
        }
    }
}

/// What one operation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaReservation {
    pub tenant: String,
    pub operation: Uuid,
    pub states: i64,
    pub bytes: i64,
    /// Slots of `concurrent_operations` (1 for every operation).
    pub operations: i64,
    /// Units of `saves_per_hour` (1 for a save).
    pub saves: i64,
}

/// Usage of one resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceUsage {
    pub limit: i64,
    pub in_use: i64,
    pub reserved: i64,
}

/// Usage of every resource of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaUsage {
    pub states: ResourceUsage,
    pub state_bytes: ResourceUsage,
    pub concurrent_operations: ResourceUsage,
    pub saves_per_hour: ResourceUsage,
}

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("quota exceeded for {}: limit {limit}, in use {in_use}, reserved {reserved}, requested {requested}", resource.as_str())]
    Exceeded {
        resource: QuotaResource,
        limit: i64,
        in_use: i64,
        reserved: i64,
        requested: i64,
    },
    #[error("save rate limit reached; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("quota backend unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait QuotaStore: Send + Sync + 'static {
    /// Atomically checks every resource against `limits` and reserves all of them, or none.
    /// Idempotent per `r.operation`: reserving again for the same operation changes nothing.
    /// The reservation is a lease that lapses after `lease` unless committed or released.
    async fn reserve(
        &self,
        r: &QuotaReservation,
        limits: &QuotaLimits,
        lease: Duration,
    ) -> Result<(), QuotaError>;

    /// Whether `reserve` would accept `r` now, answered without reserving or changing anything
    /// (dry runs). The same decision as `reserve`, with the same errors.
    async fn check(&self, r: &QuotaReservation, limits: &QuotaLimits) -> Result<(), QuotaError>;

    /// Extends the lease of a reservation still running.
    async fn renew(&self, tenant: &str, operation: Uuid, lease: Duration)
        -> Result<(), QuotaError>;

    /// The operation succeeded: its states and bytes (corrected to `actual_bytes` when given)
    /// move from reserved to in use; its operation slot is freed. Idempotent.
    async fn commit(
        &self,
        tenant: &str,
        operation: Uuid,
        actual_bytes: Option<i64>,
    ) -> Result<(), QuotaError>;

    /// The operation ended without keeping anything: every unit it reserved is freed. Idempotent.
    async fn release(&self, tenant: &str, operation: Uuid) -> Result<(), QuotaError>;

    /// A delete finished: `states` and `bytes` leave the tenant's in-use totals. Idempotent per
    /// `operation`.
    async fn free(
        &self,
        tenant: &str,
        operation: Uuid,
        states: i64,
        bytes: i64,
    ) -> Result<(), QuotaError>;

    /// Current usage of a tenant against `limits`.
    async fn usage(&self, tenant: &str, limits: &QuotaLimits) -> Result<QuotaUsage, QuotaError>;

    /// Replaces every tenant's in-use totals with the database's truth. Tenants absent from
    /// `totals` are set to zero. The reservations become exactly `live`: the operations the
    /// database shows unfinished, each with what it reserved (a reservation already present
    /// for one of them is kept as it is; reservations of operations not in `live` are
    /// dropped; missing ones, e.g. after Redis lost its data, are recreated with `lease`).
    /// Every save of `saves` (the succeeded saves of the last hour) is in its tenant's hourly
    /// window afterwards, at its start time: the window survives a restart or a flush. Saves
    /// the window already holds are kept as they are (keyed by operation, never counted twice).
    async fn rebuild(
        &self,
        totals: &[TenantTotals],
        saves: &[RecentSave],
        live: &[QuotaReservation],
        lease: Duration,
    ) -> Result<(), QuotaError>;

    /// False when the store has lost its data (a restarted or flushed Redis) and needs a
    /// rebuild before it can be trusted.
    async fn is_primed(&self) -> Result<bool, QuotaError>;
}
