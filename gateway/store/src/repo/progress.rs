//! A running operation's progress samples, and clients' requests to cancel a save.
//!
//! A sample is written by the gateway running the operation, under its lease (like the
//! heartbeat): a gateway whose operation was taken over, or a sample that comes after the end,
//! is refused. A cancel request comes from a client through any gateway: it is not the lease
//! holder's write, so it is conditional only on the save being unfinished.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use snapgate_core::ports::{CancelRequest, RepoError};
use snapgate_core::{OperationKind, Progress};
use uuid::Uuid;

use super::transitions::UNFINISHED;
use super::{leases, SeaRepository};
use crate::convert::micros;
use crate::entity::operations;
use crate::errors::db_error;

pub(super) async fn record_progress(
    repo: &SeaRepository,
    op: Uuid,
    epoch: i64,
    progress: &Progress,
) -> Result<(), RepoError> {
    let _gate = repo.write_gate().await;
    let changed = operations::Entity::update_many()
        .col_expr(
            operations::Column::ProgressPhase,
            Expr::value(progress.phase.clone()),
        )
        .col_expr(
            operations::Column::ProgressBytesProcessed,
            Expr::value(progress.bytes_processed),
        )
        .col_expr(
            operations::Column::ProgressBytesTotal,
            Expr::value(progress.bytes_total),
        )
        .col_expr(
            operations::Column::ProgressPercent,
            Expr::value(progress.percent),
        )
        .col_expr(
            operations::Column::ProgressUpdatedAt,
            Expr::value(micros(progress.updated_at)),
        )
        .filter(operations::Column::Uuid.eq(op))
        .filter(operations::Column::LeaseEpoch.eq(epoch))
        .filter(operations::Column::Status.is_in(UNFINISHED))
        .exec(&repo.db)
        .await
        .map_err(db_error)?
        .rows_affected;
    if changed == 1 {
        return Ok(());
    }
    match leases::lease_and_status(&repo.db, op).await? {
        Some(_) => Err(RepoError::Fenced(op)),
        None => Err(RepoError::NotFound),
    }
}

pub(super) async fn request_cancel(
    repo: &SeaRepository,
    op: Uuid,
    at: DateTime<Utc>,
) -> Result<CancelRequest, RepoError> {
    let _gate = repo.write_gate().await;
    let changed = operations::Entity::update_many()
        .col_expr(
            operations::Column::CancelRequestedAt,
            Expr::value(micros(at)),
        )
        .filter(operations::Column::Uuid.eq(op))
        .filter(operations::Column::Kind.eq(OperationKind::Save.as_str()))
        .filter(operations::Column::Status.is_in(UNFINISHED))
        // The first request's time is kept.
        .filter(operations::Column::CancelRequestedAt.is_null())
        .exec(&repo.db)
        .await
        .map_err(db_error)?
        .rows_affected;
    if changed == 1 {
        return Ok(CancelRequest::Recorded);
    }
    let row = operations::Entity::find_by_id(op)
        .select_only()
        .column(operations::Column::Kind)
        .column(operations::Column::Status)
        .into_tuple::<(String, String)>()
        .one(&repo.db)
        .await
        .map_err(db_error)?;
    Ok(match row {
        None => return Err(RepoError::NotFound),
        Some((kind, _)) if kind != OperationKind::Save.as_str() => CancelRequest::NotCancellable,
        Some((_, status)) if UNFINISHED.contains(&status.as_str()) => CancelRequest::Recorded,
        Some(_) => CancelRequest::Finished,
    })
}

pub(super) async fn cancel_requested(
    repo: &SeaRepository,
    op: Uuid,
) -> Result<Option<DateTime<Utc>>, RepoError> {
    let row = operations::Entity::find_by_id(op)
        .select_only()
        .column(operations::Column::CancelRequestedAt)
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(&repo.db)
        .await
        .map_err(db_error)?;
    row.ok_or(RepoError::NotFound)
}
