//! Who holds an unfinished operation: the lease epoch (`operations.lease_epoch`) and its
//! holder. Every write about an operation is an `UPDATE … WHERE lease_epoch = <held>`, so a
//! gateway whose operation was taken over (it was paused, or cut off from the database, longer
//! than the stale interval) has its writes refused: one statement decides, on SQLite and on
//! PostgreSQL alike (whose row lock makes a competing update wait, then re-check the
//! condition on the row as the winner left it).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use snapgate_core::ports::RepoError;
use snapgate_core::{Operation, OperationStatus};
use uuid::Uuid;

use super::transitions::UNFINISHED;
use super::SeaRepository;
use crate::convert::{micros, operation_from_row};
use crate::entity::operations;
use crate::errors::db_error;

pub(super) async fn mark_running(
    repo: &SeaRepository,
    op: Uuid,
    epoch: i64,
    at: DateTime<Utc>,
) -> Result<(), RepoError> {
    let _gate = repo.write_gate().await;
    let at = micros(at);
    let changed = operations::Entity::update_many()
        .col_expr(
            operations::Column::Status,
            Expr::value(OperationStatus::Running.as_str()),
        )
        .col_expr(operations::Column::StartedAt, Expr::value(at))
        .col_expr(operations::Column::UpdatedAt, Expr::value(at))
        .filter(operations::Column::Uuid.eq(op))
        .filter(operations::Column::LeaseEpoch.eq(epoch))
        .filter(operations::Column::Status.eq(OperationStatus::Pending.as_str()))
        .exec(&repo.db)
        .await
        .map_err(db_error)?
        .rows_affected;
    if changed == 1 {
        return Ok(());
    }
    // Already running under this lease (a retry): nothing to do.
    match lease_and_status(&repo.db, op).await? {
        Some((held, status)) if held == epoch && status == OperationStatus::Running.as_str() => {
            Ok(())
        }
        Some(_) => Err(RepoError::Fenced(op)),
        None => Err(RepoError::NotFound),
    }
}

pub(super) async fn touch_operation(
    repo: &SeaRepository,
    op: Uuid,
    epoch: i64,
    at: DateTime<Utc>,
) -> Result<(), RepoError> {
    let _gate = repo.write_gate().await;
    let changed = operations::Entity::update_many()
        .col_expr(operations::Column::UpdatedAt, Expr::value(micros(at)))
        .filter(operations::Column::Uuid.eq(op))
        .filter(operations::Column::LeaseEpoch.eq(epoch))
        // A finished operation keeps the time it ended.
        .filter(operations::Column::Status.is_in(UNFINISHED))
        .exec(&repo.db)
        .await
        .map_err(db_error)?
        .rows_affected;
    if changed == 1 {
        return Ok(());
    }
    Err(refusal(&repo.db, op).await)
}

pub(super) async fn take_over_operation(
    repo: &SeaRepository,
    op: Uuid,
    epoch: i64,
    stale_before: DateTime<Utc>,
    owner: &str,
    at: DateTime<Utc>,
) -> Result<Operation, RepoError> {
    let _gate = repo.write_gate().await;
    let changed = operations::Entity::update_many()
        .col_expr(operations::Column::LeaseEpoch, Expr::value(epoch + 1))
        .col_expr(operations::Column::LeaseOwner, Expr::value(owner))
        .col_expr(operations::Column::UpdatedAt, Expr::value(micros(at)))
        .filter(operations::Column::Uuid.eq(op))
        .filter(operations::Column::LeaseEpoch.eq(epoch))
        .filter(operations::Column::Status.is_in(UNFINISHED))
        // Stale still: a heartbeat that landed since the caller looked keeps the operation
        // with its gateway.
        .filter(operations::Column::UpdatedAt.lte(micros(stale_before)))
        .exec(&repo.db)
        .await
        .map_err(db_error)?
        .rows_affected;
    if changed == 0 {
        return Err(refusal(&repo.db, op).await);
    }
    let row = operations::Entity::find_by_id(op)
        .one(&repo.db)
        .await
        .map_err(db_error)?
        .ok_or(RepoError::NotFound)?;
    operation_from_row(row)
}

/// Why a conditional write matched no row: the operation does not exist, or the writer does
/// not hold it (any more).
async fn refusal(db: &impl ConnectionTrait, op: Uuid) -> RepoError {
    match lease_and_status(db, op).await {
        Ok(Some(_)) => RepoError::Fenced(op),
        Ok(None) => RepoError::NotFound,
        Err(e) => e,
    }
}

/// The operation's lease epoch and status, if it exists.
pub(super) async fn lease_and_status(
    db: &impl ConnectionTrait,
    op: Uuid,
) -> Result<Option<(i64, String)>, RepoError> {
    operations::Entity::find_by_id(op)
        .select_only()
        .column(operations::Column::LeaseEpoch)
        .column(operations::Column::Status)
        .into_tuple::<(i64, String)>()
        .one(db)
        .await
        .map_err(db_error)
}
