//! Quota limits and usage, and instance ownership: the admin side of tenancy.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::require;
use super::Service;
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
        require(caller, Role::Reader)?;
        // The same rule as for setting a quota: an id no tenant can have is a bad request.
        validate_tenant_id(tenant)?;
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
        if !caller.can_see(tenant) {
            return Err(ServiceError::not_found("tenant", tenant));
        }
        require(caller, Role::Admin)?;
        validate_tenant_id(tenant)?;
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
    /// metadata. Admin only.
    pub async fn set_instance_owner(
        &self,
        caller: &Caller,
        instance: Uuid,
        tenant: Option<&str>,
    ) -> Result<(), ServiceError> {
        require(caller, Role::Admin)?;
        if let Some(t) = tenant {
            validate_tenant_id(t)?;
        }
        self.visible_instance(caller, instance).await?;
        self.repo.set_instance_owner(instance, tenant).await?;
        Ok(())
    }
}

fn validate_tenant_id(tenant: &str) -> Result<(), ServiceError> {
    // Characters, not bytes: PostgreSQL's varchar(255) counts characters.
    if tenant.is_empty() || tenant.chars().count() > 255 || tenant.chars().any(char::is_control) {
        return Err(ServiceError::bad_request(
            "invalid_tenant",
            "tenant id must be 1–255 printable characters",
        ));
    }
    Ok(())
}
