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
    #[schema(minimum = -1)]
    #[serde(deserialize_with = "integral::deserialize")]
    pub states: i64,
    #[schema(minimum = -1)]
    #[serde(deserialize_with = "integral::deserialize")]
    pub state_bytes: i64,
    #[schema(minimum = -1)]
    #[serde(deserialize_with = "integral::deserialize")]
    pub concurrent_operations: i64,
    #[schema(minimum = -1)]
    #[serde(deserialize_with = "integral::deserialize")]
    pub saves_per_hour: i64,
}

/// An `i64` that may arrive as an integral JSON number written with a fraction (`3.0`): JSON
/// Schema's `integer`, which the OpenAPI document promises, admits it.
mod integral {
    use serde::de::{Deserializer, Error, Unexpected, Visitor};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        d.deserialize_any(Integral)
    }

    struct Integral;

    impl Visitor<'_> for Integral {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer (i64)")
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<i64, E> {
            // 2^63 is exact in f64; every integral f64 in [-2^63, 2^63) is an i64.
            const BOUND: f64 = 9_223_372_036_854_775_808.0;
            let nearest = v.round();
            // serde_json reads a long decimal to within one unit in the last place: from 2^51
            // up, `3629712833381478.0` may arrive as `…478.5`. Such a number is the integer it
            // was written as, while `2.5` (far more than an ulp from an integer) is not one.
            let integral = (v - nearest).abs() <= v.abs() * f64::EPSILON;
            if integral && (-BOUND..BOUND).contains(&nearest) {
                Ok(nearest as i64)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }
    }
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

    /// Adds `states` and `bytes` that the database already records for `tenant` (an instance's
    /// states moved to it) to its in-use totals. Idempotent per `operation`. A store that
    /// rebuilds the tenant from the database instead (its data was not trusted) counts them
    /// through that rebuild, never twice. By default a reservation of exactly that, with no
    /// operation slot and no save, checked against no limit and committed at once (`lease`
    /// only bounds it in between).
    async fn add_in_use(
        &self,
        tenant: &str,
        operation: Uuid,
        states: i64,
        bytes: i64,
        lease: Duration,
    ) -> Result<(), QuotaError> {
        let r = QuotaReservation {
            tenant: tenant.to_owned(),
            operation,
            states,
            bytes,
            operations: 0,
            saves: 0,
        };
        self.reserve(&r, &QuotaLimits::UNLIMITED, lease).await?;
        self.commit(tenant, operation, Some(bytes)).await
    }

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

#[cfg(test)]
mod tests {
    use super::QuotaLimits;

    /// JSON Schema's `integer` admits `3.0`; a fraction, a string or an overflow does not.
    #[test]
    fn limits_accept_integral_numbers_only() {
        let parse = |json: &str| serde_json::from_str::<QuotaLimits>(json);
        let l = parse(r#"{"states": 3.0, "state_bytes": -1, "concurrent_operations": 2, "saves_per_hour": 0.0}"#)
            .expect("integral numbers are integers");
        assert_eq!(
            (
                l.states,
                l.state_bytes,
                l.concurrent_operations,
                l.saves_per_hour
            ),
            (3, -1, 2, 0)
        );
        // Found by the fuzz run: a long integral number read back a half off.
        let l = parse(r#"{"states": 1, "state_bytes": -1, "concurrent_operations": 2, "saves_per_hour": 3629712833381478.0}"#)
            .expect("a long integral number");
        assert!(
            (l.saves_per_hour - 3_629_712_833_381_478).abs() <= 1,
            "{}",
            l.saves_per_hour
        );
        for bad in [
            r#"{"states": 3.5, "state_bytes": -1, "concurrent_operations": 2, "saves_per_hour": 0}"#,
            r#"{"states": 0.5, "state_bytes": -1, "concurrent_operations": 2, "saves_per_hour": 0}"#,
            r#"{"states": "3", "state_bytes": -1, "concurrent_operations": 2, "saves_per_hour": 0}"#,
            r#"{"states": 9223372036854775808, "state_bytes": -1, "concurrent_operations": 2, "saves_per_hour": 0}"#,
            r#"{"states": 1e19, "state_bytes": -1, "concurrent_operations": 2, "saves_per_hour": 0}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
