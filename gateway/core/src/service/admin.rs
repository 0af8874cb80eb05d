//! The policy side of administration: the decision log and the plugin chain. Authorized here,
//! like every other call: handlers only translate HTTP.

use super::access::{decisions_tenant, require_cloud_admin};
use super::Service;
use crate::auth::Caller;
use crate::ports::repository::{DecisionFilter, DecisionRecord};
use crate::ServiceError;

/// Largest page of the decision log.
pub const MAX_DECISIONS_PAGE: u64 = 1000;

impl Service {
    /// Recorded policy decisions, newest first: the operator reads every tenant's, a tenant's
    /// admin its own tenant's (see [`decisions_tenant`]). The limit is clamped to
    /// 1..=[`MAX_DECISIONS_PAGE`].
    pub async fn list_decisions(
        &self,
        caller: &Caller,
        mut filter: DecisionFilter,
    ) -> Result<Vec<DecisionRecord>, ServiceError> {
        filter.tenant = decisions_tenant(caller, filter.tenant.take())?;
        filter.limit = filter.limit.clamp(1, MAX_DECISIONS_PAGE);
        Ok(self.repo.list_decisions(&filter).await?)
    }

    /// The loaded plugin chain, in order. The cloud operator only.
    pub fn policy_chain(&self, caller: &Caller) -> Result<serde_json::Value, ServiceError> {
        require_cloud_admin(caller)?;
        Ok(self.policy_admin.chain())
    }

    /// Rebuilds the plugin chain from the configuration and swaps it in. The cloud operator only; a chain
    /// that fails to load is refused (422) and the old one keeps serving.
    pub async fn reload_policy(&self, caller: &Caller) -> Result<serde_json::Value, ServiceError> {
        require_cloud_admin(caller)?;
        self.policy_admin.reload().await.map_err(|message| {
            tracing::warn!(error = %message, subject = %caller.subject, "policy reload refused");
            ServiceError::PolicyReloadFailed(message)
        })
    }
}
