//! The small traits through which the service reaches outside systems. One implementation
//! crate per trait: `snapgate-compute` (libvirt), `snapgate-quota` (Redis and in-process),
//! `snapgate-policy` (wasmtime), `snapgate-store` (sea-orm).

pub mod compute;
pub mod policy;
pub mod quota;
pub mod quota_truth;
pub mod repository;

pub use compute::{ComputeBackend, ComputeError, SaveRequest, SavedSnapshot, SnapshotProbe};
pub use policy::{Decision, PolicyEngine, PolicyInput, PolicyOutcome, PolicyState, QuotaUsageView};
pub use quota::{
    QuotaError, QuotaLimits, QuotaReservation, QuotaResource, QuotaStore, QuotaUsage, ResourceUsage,
};
pub use quota_truth::{QuotaTruth, TenantTruth};
pub use repository::{ListPage, RepoError, Repository, TenantTotals};
