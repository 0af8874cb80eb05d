//! Instance owners and per-tenant quota limits: one row each, written by admins. An owner
//! change moves the instance's states (and so their quota usage) with it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict, Order};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use snapgate_core::ports::{QuotaLimits, RepoError, TenantTotals};
use snapgate_core::StateStatus;
use uuid::Uuid;

use super::end_transaction;
use super::reads::KEPT;
use crate::convert::{limits_from_row, limits_row, micros};
use crate::entity::{instance_locks, instance_owners, instance_states, quota_limits};
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

/// One transaction: `Some` sets (or replaces) the owner, `None` removes the assignment; every
/// state of the instance goes to `states_to` (when given). Refused while an operation holds the
/// instance's lock. Returns, per former tenant, the kept states and bytes that moved.
pub(super) async fn set_instance_owner(
    db: &DatabaseConnection,
    instance: Uuid,
    owner: Option<&str>,
    states_to: Option<&str>,
) -> Result<Vec<TenantTotals>, RepoError> {
    let txn = db.begin().await.map_err(db_error)?;
    let result = async {
        let now = micros(Utc::now());
        // An operation in flight would end with the state of the tenant it started for.
        if let Some(lock) = instance_locks::Entity::find_by_id(instance)
            .one(&txn)
            .await
            .map_err(db_error)?
        {
            return Err(RepoError::InstanceBusy(lock.operation_uuid));
        }
        write_owner_row(&txn, instance, owner, now).await?;
        let moved = match states_to {
            Some(to) => move_states(&txn, instance, to, now).await?,
            None => Vec::new(),
        };
        Ok(moved)
    }
    .await;
    end_transaction(txn, result).await
}

async fn write_owner_row(
    txn: &DatabaseTransaction,
    instance: Uuid,
    owner: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), RepoError> {
    let Some(tenant) = owner else {
        instance_owners::Entity::delete_by_id(instance)
            .exec(txn)
            .await
            .map_err(db_error)?;
        return Ok(());
    };
    let row = instance_owners::ActiveModel {
        instance_uuid: Set(instance),
        tenant_id: Set(tenant.to_owned()),
        updated_at: Set(now),
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
        .exec_without_returning(txn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Gives every state of `instance` to `to`; returns the kept states and bytes each former
/// tenant held.
async fn move_states(
    txn: &DatabaseTransaction,
    instance: Uuid,
    to: &str,
    now: DateTime<Utc>,
) -> Result<Vec<TenantTotals>, RepoError> {
    use instance_states::Column as S;
    let rows: Vec<(String, i64, i64)> = instance_states::Entity::find()
        .select_only()
        .column(S::TenantId)
        .column_as(Expr::col(S::Uuid).count(), "states")
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT)"),
            "bytes",
        )
        .filter(S::InstanceUuid.eq(instance))
        .filter(S::TenantId.ne(to))
        .filter(S::Status.is_in(KEPT.map(StateStatus::as_str)))
        .group_by(S::TenantId)
        .order_by(S::TenantId, Order::Asc)
        .into_tuple()
        .all(txn)
        .await
        .map_err(db_error)?;
    instance_states::Entity::update_many()
        .col_expr(S::TenantId, Expr::value(to))
        .col_expr(S::UpdatedAt, Expr::value(now))
        .filter(S::InstanceUuid.eq(instance))
        .filter(S::TenantId.ne(to))
        .exec(txn)
        .await
        .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|(tenant, states, bytes)| TenantTotals {
            tenant,
            states,
            bytes,
        })
        .collect())
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

/// Every owner assignment, by instance uuid.
pub(super) async fn owner_assignments(
    db: &DatabaseConnection,
) -> Result<Vec<(Uuid, String)>, RepoError> {
    Ok(instance_owners::Entity::find()
        .order_by(instance_owners::Column::InstanceUuid, Order::Asc)
        .all(db)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|row| (row.instance_uuid, row.tenant_id))
        .collect())
}

/// The tenants that have limits of their own, by id.
pub(super) async fn tenants_with_limits(db: &DatabaseConnection) -> Result<Vec<String>, RepoError> {
    Ok(quota_limits::Entity::find()
        .order_by(quota_limits::Column::TenantId, Order::Asc)
        .all(db)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|row| row.tenant_id)
        .collect())
}
