//! Instance owners and per-tenant quota limits: one row each, written by admins.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::ActiveValue::Set;
use sea_orm::{DatabaseConnection, EntityTrait};
use snapgate_core::ports::{QuotaLimits, RepoError};
use uuid::Uuid;

use crate::convert::{limits_from_row, limits_row, micros};
use crate::entity::{instance_owners, quota_limits};
use crate::errors::db_error;

pub(super) async fn instance_owner(
    db: &DatabaseConnection,
    instance: Uuid,
) -> Result<Option<String>, RepoError> {
    Ok(instance_owners::Entity::find_by_id(instance)
        .one(db)
        .await
        .map_err(db_error)?
        .map(|row| row.tenant_id))
}

/// `Some` sets (or replaces) the owner; `None` removes the assignment.
pub(super) async fn set_instance_owner(
    db: &DatabaseConnection,
    instance: Uuid,
    tenant: Option<&str>,
) -> Result<(), RepoError> {
    let Some(tenant) = tenant else {
        instance_owners::Entity::delete_by_id(instance)
            .exec(db)
            .await
            .map_err(db_error)?;
        return Ok(());
    };
    let row = instance_owners::ActiveModel {
        instance_uuid: Set(instance),
        tenant_id: Set(tenant.to_owned()),
        updated_at: Set(micros(Utc::now())),
    };
    instance_owners::Entity::insert(row)
        .on_conflict(
            OnConflict::column(instance_owners::Column::InstanceUuid)
                .update_columns([
                    instance_owners::Column::TenantId,
                    instance_owners::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map_err(db_error)?;
    Ok(())
}

pub(super) async fn quota_limits(
    db: &DatabaseConnection,
    tenant: &str,
) -> Result<Option<QuotaLimits>, RepoError> {
    Ok(quota_limits::Entity::find_by_id(tenant.to_owned())
        .one(db)
        .await
        .map_err(db_error)?
        .map(limits_from_row))
}

/// `Some` sets the tenant's limits; `None` returns it to the configured defaults.
pub(super) async fn set_quota_limits(
    db: &DatabaseConnection,
    tenant: &str,
    limits: Option<&QuotaLimits>,
) -> Result<(), RepoError> {
    let Some(limits) = limits else {
        quota_limits::Entity::delete_by_id(tenant.to_owned())
            .exec(db)
            .await
            .map_err(db_error)?;
        return Ok(());
    };
    use quota_limits::Column as Q;
    quota_limits::Entity::insert(limits_row(tenant, limits, Utc::now()))
        .on_conflict(
            OnConflict::column(Q::TenantId)
                .update_columns([
                    Q::States,
                    Q::StateBytes,
                    Q::ConcurrentOperations,
                    Q::SavesPerHour,
                    Q::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map_err(db_error)?;
    Ok(())
}
