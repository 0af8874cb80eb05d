//! Quota limits and usage, and instance ownership: the operator's side of tenancy.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::{require, require_cloud_admin};
use super::{validate, Service};
use crate::auth::{Caller, Role};
use crate::ports::{QuotaLimits, QuotaUsage};
use crate::ServiceError;

/// A tenant's limits and usage.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotaView {
    pub tenant_id: String,
    /// True when the tenant has limits of its own; false when the defaults apply.
    pub custom: bool,
    pub usage: QuotaUsage,
}

impl Service {
    pub async fn get_quota(
        &self,
        caller: &Caller,
        tenant: &str,
    ) -> Result<QuotaView, ServiceError> {
        validate::tenant_id(tenant)?;
        require(caller, Role::Reader)?;
        if !caller.can_see(tenant) {
            return Err(ServiceError::not_found("tenant", tenant));
        }
        let custom = self.repo.quota_limits(tenant).await?;
        let limits = custom.unwrap_or(self.settings.default_limits);
        let usage = self.quota.usage(tenant, &limits).await?;
        Ok(QuotaView {
            tenant_id: tenant.to_owned(),
            custom: custom.is_some(),
            usage,
        })
    }

    pub async fn set_quota(
        &self,
        caller: &Caller,
        tenant: &str,
        limits: Option<QuotaLimits>,
    ) -> Result<QuotaView, ServiceError> {
        validate::tenant_id(tenant)?;
        // Another tenant's quota is a 404 for a tenant's caller, as everywhere; its own tenant's
        // limits are the operator's to set (a tenant admin could otherwise raise its own).
        if !caller.can_see(tenant) {
            return Err(ServiceError::not_found("tenant", tenant));
        }
        require_cloud_admin(caller)?;
        if let Some(l) = &limits {
            for r in crate::ports::QuotaResource::ALL {
                if l.get(r) < -1 {
                    return Err(ServiceError::bad_request(
                        "invalid_quota",
                        format!("{} must be -1 (unlimited) or at least 0", r.as_str()),
                    ));
                }
            }
        }
        self.repo.set_quota_limits(tenant, limits.as_ref()).await?;
        self.get_quota(caller, tenant).await
    }

    /// Sets (or, with `None`, clears) the tenant that owns an instance, overriding the domain's
    /// metadata. The cloud operator only. The instance's states, and their quota usage, move to the new
    /// owner (see `ownership.rs`); refused with 409 while an operation runs on the instance.
    pub async fn set_instance_owner(
        &self,
        caller: &Caller,
        instance: Uuid,
        tenant: Option<&str>,
    ) -> Result<(), ServiceError> {
        require_cloud_admin(caller)?;
        if let Some(t) = tenant {
            validate::tenant_id(t)?;
        }
        let visible = self.visible_instance(caller, instance).await?;
        self.move_instance(instance, tenant, visible).await
    }
}
