//! Moving an instance to another tenant. Its states go with it, and so does their quota usage:
//! a tenant never keeps usage for states it can no longer see, and the new owner sees (and
//! pays for) every state of what it now owns.

use uuid::Uuid;

use super::access::VisibleInstance;
use super::Service;
use crate::ports::TenantTotals;
use crate::ServiceError;

impl Service {
    /// Records the new owner (`None`: back to the domain's metadata) and moves the states in
    /// one transaction, which fails with 409 `instance_busy` while an operation holds the
    /// instance; then moves the quota usage.
    pub(super) async fn move_instance(
        &self,
        instance: Uuid,
        owner: Option<&str>,
        visible: VisibleInstance,
    ) -> Result<(), ServiceError> {
        // Whom the states belong to afterwards: the assigned owner, else the metadata's. An
        // instance left with no owner at all keeps its states where they are (only admins see
        // it, and usage stays with the tenants that hold the states).
        let states_to = match owner {
            Some(t) => Some(t.to_owned()),
            None => visible.live()?.0.owner_tenant,
        };
        let moved = self
            .repo
            .set_instance_owner(instance, owner, states_to.as_deref())
            .await?;
        if let Some(to) = &states_to {
            for from in &moved {
                self.move_usage(from, to).await;
            }
            if !moved.is_empty() {
                tracing::info!(%instance, to = %to, from = ?moved, "instance states moved to their new owner");
            }
        }
        Ok(())
    }

    /// Frees `from`'s usage and adds it to `to`'s, each step idempotent under one fresh id.
    /// The new owner's limits are not checked: an admin's move is not a new save (like a
    /// lowered limit, it only stops further saves). Both steps run after the database moved
    /// the states: a store that must rebuild either tenant from the database (a Redis
    /// failover) finds the move there, and counts it once.
    async fn move_usage(&self, from: &TenantTotals, to: &str) {
        let id = Uuid::now_v7();
        let freed = self
            .quota
            .free(&from.tenant, id, from.states, from.bytes)
            .await;
        let added = self
            .quota
            .add_in_use(to, id, from.states, from.bytes, self.settings.quota_lease)
            .await;
        if let Err(e) = freed.and(added) {
            // The database is right already; the next rebuild brings the store in line.
            tracing::warn!(error = %e, from = %from.tenant, %to, "could not move quota usage; it will be rebuilt from the database");
            self.mark_quota_rebuild_due();
        }
    }
}
