//! Where a shared quota store reads the database's truth of one tenant when its own copy can no
//! longer be trusted: a Redis replica promoted after its master died may lack the last writes
//! (replication is asynchronous), and a restarted Redis may have reloaded an older snapshot.
//! The store rebuilds that tenant from this source before it decides anything for it.

use async_trait::async_trait;

use super::quota::QuotaReservation;
use super::repository::{RecentSave, RepoError, TenantTotals};

/// What the database holds for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTruth {
    /// Kept states and their bytes; `None` for a tenant that keeps none.
    pub totals: Option<TenantTotals>,
    /// One reservation per unfinished operation of the tenant, as it reserved.
    pub live: Vec<QuotaReservation>,
    /// The tenant's saves that succeeded within the last hour (the committed part of its
    /// saves-per-hour window), oldest first.
    pub saves: Vec<RecentSave>,
}

#[async_trait]
pub trait QuotaTruth: Send + Sync + 'static {
    async fn tenant_truth(&self, tenant: &str) -> Result<TenantTruth, RepoError>;
}
