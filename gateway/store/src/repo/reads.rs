//! Queries on states and operations, and the purge of old operations.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Order};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use snapgate_core::ports::{ListPage, RecentSave, RepoError, TenantTotals};
use snapgate_core::{Operation, OperationKind, OperationStatus, State, StateStatus};
use uuid::Uuid;

use crate::convert::{micros, operation_from_row, state_from_row};
use crate::entity::{instance_states, operations};
use crate::errors::db_error;

use instance_states::Column as S;
use operations::Column as O;

/// States that count against a tenant's quota: their snapshot exists (or is being removed).
pub(super) const KEPT: [StateStatus; 3] = [
    StateStatus::Available,
    StateStatus::Applying,
    StateStatus::Deleting,
];

pub(super) async fn get_state(
    db: &DatabaseConnection,
    uuid: Uuid,
) -> Result<Option<State>, RepoError> {
    instance_states::Entity::find_by_id(uuid)
        .one(db)
        .await
        .map_err(db_error)?
        .map(state_from_row)
        .transpose()
}

/// Keyset pagination, newest first: `(date, uuid)` descending, starting strictly after the
/// marker's `(date, uuid)`. Equal dates are ordered by uuid, so no item is lost or repeated
/// across pages whatever the clock resolution. UUIDs compare by their bytes on both backends
/// (PostgreSQL `uuid`, SQLite 16-byte blob), the same order as `Uuid`'s `Ord`.
pub(super) async fn list_states(
    db: &DatabaseConnection,
    instance: Uuid,
    limit: u64,
    marker: Option<Uuid>,
) -> Result<ListPage, RepoError> {
    let mut query = instance_states::Entity::find().filter(S::InstanceUuid.eq(instance));
    if let Some(marker) = marker {
        let anchor = instance_states::Entity::find_by_id(marker)
            .filter(S::InstanceUuid.eq(instance))
            .one(db)
            .await
            .map_err(db_error)?
            .ok_or(RepoError::NotFound)?;
        query = query.filter(
            Condition::any().add(S::Date.lt(anchor.date)).add(
                Condition::all()
                    .add(S::Date.eq(anchor.date))
                    .add(S::Uuid.lt(anchor.uuid)),
            ),
        );
    }
    let mut rows = query
        .order_by(S::Date, Order::Desc)
        .order_by(S::Uuid, Order::Desc)
        .limit(limit.saturating_add(1))
        .all(db)
        .await
        .map_err(db_error)?;
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let items = rows
        .into_iter()
        .map(state_from_row)
        .collect::<Result<_, _>>()?;
    Ok(ListPage { items, more })
}

pub(super) async fn count_states(
    db: &DatabaseConnection,
    instance: Uuid,
) -> Result<u64, RepoError> {
    instance_states::Entity::find()
        .filter(S::InstanceUuid.eq(instance))
        .count(db)
        .await
        .map_err(db_error)
}

pub(super) async fn states_of_instance(
    db: &DatabaseConnection,
    instance: Uuid,
) -> Result<Vec<State>, RepoError> {
    instance_states::Entity::find()
        .filter(S::InstanceUuid.eq(instance))
        .order_by(S::Date, Order::Desc)
        .order_by(S::Uuid, Order::Desc)
        .all(db)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(state_from_row)
        .collect()
}

pub(super) async fn get_operation(
    db: &DatabaseConnection,
    uuid: Uuid,
) -> Result<Option<Operation>, RepoError> {
    operations::Entity::find_by_id(uuid)
        .one(db)
        .await
        .map_err(db_error)?
        .map(operation_from_row)
        .transpose()
}

pub(super) async fn unfinished_operations(
    db: &DatabaseConnection,
) -> Result<Vec<Operation>, RepoError> {
    operations::Entity::find()
        .filter(O::Status.is_in([
            OperationStatus::Pending.as_str(),
            OperationStatus::Running.as_str(),
        ]))
        .order_by(O::CreatedAt, Order::Asc)
        .order_by(O::Uuid, Order::Asc)
        .all(db)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(operation_from_row)
        .collect()
}

/// Succeeded saves started at or after `since`, oldest first (the saves-per-hour window).
pub(super) async fn saves_since(
    db: &DatabaseConnection,
    since: DateTime<Utc>,
) -> Result<Vec<RecentSave>, RepoError> {
    let rows: Vec<(String, Uuid, DateTime<Utc>)> = operations::Entity::find()
        .select_only()
        .column(O::TenantId)
        .column(O::Uuid)
        .column(O::CreatedAt)
        .filter(O::Kind.eq(OperationKind::Save.as_str()))
        .filter(O::Status.eq(OperationStatus::Succeeded.as_str()))
        .filter(O::CreatedAt.gte(micros(since)))
        .order_by(O::CreatedAt, Order::Asc)
        .order_by(O::Uuid, Order::Asc)
        .into_tuple()
        .all(db)
        .await
        .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|(tenant, operation, at)| RecentSave {
            tenant,
            operation,
            at,
        })
        .collect())
}

/// Deletes finished operations that ended before `before`. Unfinished ones are never purged,
/// whatever their age: the reconciler ends them first.
pub(super) async fn purge_operations(
    db: &DatabaseConnection,
    before: DateTime<Utc>,
) -> Result<u64, RepoError> {
    let deleted = operations::Entity::delete_many()
        .filter(O::Status.is_in([
            OperationStatus::Succeeded.as_str(),
            OperationStatus::Failed.as_str(),
        ]))
        .filter(O::FinishedAt.lt(micros(before)))
        .exec(db)
        .await
        .map_err(db_error)?;
    Ok(deleted.rows_affected)
}

/// Which of `ids` are finished, in one query.
pub(super) async fn finished_operations(
    db: &DatabaseConnection,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, RepoError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    operations::Entity::find()
        .select_only()
        .column(O::Uuid)
        .filter(O::Uuid.is_in(ids.iter().copied()))
        .filter(O::Status.is_in([
            OperationStatus::Succeeded.as_str(),
            OperationStatus::Failed.as_str(),
        ]))
        .into_tuple::<Uuid>()
        .all(db)
        .await
        .map_err(db_error)
}

pub(super) async fn tenant_totals(db: &DatabaseConnection) -> Result<Vec<TenantTotals>, RepoError> {
    let rows: Vec<(String, i64, i64)> = instance_states::Entity::find()
        .select_only()
        .column(S::TenantId)
        .column_as(Expr::col(S::Uuid).count(), "states")
        // PostgreSQL's SUM(bigint) is numeric: cast back so both backends give an i64.
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT)"),
            "bytes",
        )
        .filter(S::Status.is_in(KEPT.map(StateStatus::as_str)))
        .group_by(S::TenantId)
        .order_by(S::TenantId, Order::Asc)
        .into_tuple()
        .all(db)
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
