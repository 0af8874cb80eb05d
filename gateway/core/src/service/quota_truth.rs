//! The database's truth of one tenant's quota, for a shared quota store that must rebuild a
//! tenant it can no longer trust (see `ports::quota_truth`).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use crate::ports::{QuotaReservation, QuotaTruth, RepoError, Repository, TenantTruth};
use crate::{Operation, OperationKind};

/// What an unfinished operation holds in the quota store: exactly what it reserved when it
/// started (a save: one state, its bytes, an operation slot and a save; others: the slot).
pub fn reservation_of(op: &Operation) -> QuotaReservation {
    let save = op.kind == OperationKind::Save;
    QuotaReservation {
        tenant: op.tenant_id.clone(),
        operation: op.uuid,
        states: i64::from(save),
        bytes: op.reserved_bytes,
        operations: 1,
        saves: i64::from(save),
    }
}

/// Reads the truth from the repository.
pub struct RepositoryQuotaTruth {
    repo: Arc<dyn Repository>,
}

impl RepositoryQuotaTruth {
    pub fn new(repo: Arc<dyn Repository>) -> Self {
        Self { repo }
    }
}

#[async_trait]
impl QuotaTruth for RepositoryQuotaTruth {
    /// Whole-table reads filtered here: a tenant is rebuilt only after Redis lost writes (a
    /// failover or a restart), rarely enough not to need per-tenant queries.
    async fn tenant_truth(&self, tenant: &str) -> Result<TenantTruth, RepoError> {
        let totals = self
            .repo
            .tenant_totals()
            .await?
            .into_iter()
            .find(|t| t.tenant == tenant);
        let live = self
            .repo
            .unfinished_operations()
            .await?
            .iter()
            .filter(|op| op.tenant_id == tenant)
            .map(reservation_of)
            .collect();
        // The window's committed saves: without them a promoted replica that missed them
        // would let the tenant save again past its hourly limit. The Redis script skips any
        // older than an hour by its own clock.
        let saves = self
            .repo
            .saves_since(Utc::now() - chrono::Duration::hours(1))
            .await?
            .into_iter()
            .filter(|s| s.tenant == tenant)
            .collect();
        Ok(TenantTruth {
            totals,
            live,
            saves,
        })
    }
}
