//! The transactions that move states and operations through their life cycle, and the
//! instance lock that allows one state-changing operation per instance.
//!
//! The lock is a row in `instance_locks` keyed by the instance: inserting it is the only way to
//! start an operation, so the rule holds across gateway replicas. Inserts use
//! `ON CONFLICT DO NOTHING` and look at the row count, which keeps a PostgreSQL transaction
//! usable after a conflict (a failed statement would abort it) and waits, on PostgreSQL, for a
//! competing transaction to commit or roll back before deciding.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, TransactionTrait,
};
use snapgate_core::events::NewEvent;
use snapgate_core::ports::{KeyedAnswer, RepoError};
use snapgate_core::{Operation, State, StateStatus};
use uuid::Uuid;

use super::{end_transaction, idempotency, leases, rollback, SeaRepository};
use crate::connect::Backend;
use crate::convert::{micros, operation_row, state_row};
use crate::entity::{instance_locks, instance_states, operations};
use crate::errors::db_error;

/// A lock holder may finish between our failed insert and the look-up of its id; we then try
/// again from the start. More than a few rounds means heavy churn: report the instance busy.
const LOCK_ATTEMPTS: usize = 5;

pub(super) const UNFINISHED: [&str; 2] = ["pending", "running"];

enum LockOutcome {
    Acquired,
    HeldBy(Uuid),
    /// Someone held it a moment ago and has let go since.
    Released,
}

fn do_nothing_on_conflict() -> OnConflict {
    OnConflict::new().do_nothing().to_owned()
}

pub(super) async fn begin_save(
    repo: &SeaRepository,
    state: &State,
    op: &Operation,
    answer: Option<&KeyedAnswer>,
) -> Result<(), RepoError> {
    // The common case in one round trip; it writes all or nothing, and when it writes
    // nothing the transaction below finds out why (issue 11, `accept_save.rs`). A keyed save
    // stores its answer under the claim's guard, which only the transaction does.
    if answer.is_none() {
        match super::accept_save::try_begin_save(repo, state, op).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(error = %e, "one-round-trip save write failed; using the transaction")
            }
        }
    }
    let state_row = state_row(state)?;
    let op_row = operation_row(op);
    let mut last_holder = None;
    for _ in 0..LOCK_ATTEMPTS {
        let _gate = repo.write_gate().await;
        let txn = repo.db.begin().await.map_err(db_error)?;
        // The name is checked before the lock, so a duplicate is reported as such even
        // while the instance is busy.
        let result = async {
            // The answer first: a request whose key was taken over changes nothing.
            if let Some(answer) = answer {
                idempotency::store_answer(&txn, answer).await?;
            }
            let inserted = instance_states::Entity::insert(state_row.clone())
                .on_conflict(do_nothing_on_conflict())
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
            if inserted == 0 {
                return Err(RepoError::DuplicateName(state.name.clone()));
            }
            operations::Entity::insert(op_row.clone())
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
            take_lock(&txn, op).await
        }
        .await;
        match settle(txn, result).await? {
            None => return Ok(()),
            Some(holder) => last_holder = holder,
        }
    }
    Err(busy_after_retries(op, last_holder))
}

pub(super) async fn begin_state_operation(
    repo: &SeaRepository,
    op: &Operation,
    from: &[StateStatus],
    to: StateStatus,
    answer: Option<&KeyedAnswer>,
) -> Result<(), RepoError> {
    let op_row = operation_row(op);
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let mut last_holder = None;
    for _ in 0..LOCK_ATTEMPTS {
        let _gate = repo.write_gate().await;
        let txn = repo.db.begin().await.map_err(db_error)?;
        let result = async {
            if let Some(answer) = answer {
                idempotency::store_answer(&txn, answer).await?;
            }
            // The status check and the change are one statement, so two requests can never
            // both see `available`.
            let changed = instance_states::Entity::update_many()
                .col_expr(instance_states::Column::Status, Expr::value(to.as_str()))
                .col_expr(
                    instance_states::Column::UpdatedAt,
                    Expr::value(micros(op.updated_at)),
                )
                .filter(instance_states::Column::Uuid.eq(op.state_uuid))
                .filter(instance_states::Column::InstanceUuid.eq(op.instance_uuid))
                .filter(instance_states::Column::Status.is_in(from.iter().copied()))
                .exec(&txn)
                .await
                .map_err(db_error)?
                .rows_affected;
            if changed == 0 {
                return Err(why_unchanged(&txn, op).await);
            }
            operations::Entity::insert(op_row.clone())
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
            take_lock(&txn, op).await
        }
        .await;
        match settle(txn, result).await? {
            None => return Ok(()),
            Some(holder) => last_holder = holder,
        }
    }
    Err(busy_after_retries(op, last_holder))
}

/// Commits when the lock was taken (`None`); otherwise rolls back and returns the error, or
/// `Some(last holder)` when the caller should try again.
async fn settle(
    txn: DatabaseTransaction,
    result: Result<LockOutcome, RepoError>,
) -> Result<Option<Option<Uuid>>, RepoError> {
    match result {
        Ok(LockOutcome::Acquired) => end_transaction(txn, Ok(None)).await,
        Ok(LockOutcome::HeldBy(holder)) => {
            rollback(txn).await;
            Err(RepoError::InstanceBusy(holder))
        }
        Ok(LockOutcome::Released) => {
            rollback(txn).await;
            Ok(Some(None))
        }
        Err(e) => {
            rollback(txn).await;
            Err(e)
        }
    }
}

fn busy_after_retries(op: &Operation, holder: Option<Uuid>) -> RepoError {
    tracing::warn!(instance = %op.instance_uuid, "instance lock kept changing hands");
    RepoError::InstanceBusy(holder.unwrap_or_else(Uuid::nil))
}

async fn take_lock(txn: &DatabaseTransaction, op: &Operation) -> Result<LockOutcome, RepoError> {
    let row = instance_locks::ActiveModel {
        instance_uuid: Set(op.instance_uuid),
        operation_uuid: Set(op.uuid),
        acquired_at: Set(micros(op.created_at)),
    };
    let inserted = instance_locks::Entity::insert(row)
        .on_conflict(do_nothing_on_conflict())
        .exec_without_returning(txn)
        .await
        .map_err(db_error)?;
    if inserted == 1 {
        return Ok(LockOutcome::Acquired);
    }
    let holder = instance_locks::Entity::find_by_id(op.instance_uuid)
        .one(txn)
        .await
        .map_err(db_error)?;
    Ok(match holder {
        Some(lock) => LockOutcome::HeldBy(lock.operation_uuid),
        None => LockOutcome::Released,
    })
}

/// After a conditional status change matched no row: the state is missing, or in another
/// status.
async fn why_unchanged(txn: &DatabaseTransaction, op: &Operation) -> RepoError {
    let current = instance_states::Entity::find_by_id(op.state_uuid)
        .filter(instance_states::Column::InstanceUuid.eq(op.instance_uuid))
        .one(txn)
        .await;
    match current {
        Ok(Some(row)) => match row.status.parse::<StateStatus>() {
            Ok(status) => RepoError::WrongStatus(status),
            Err(e) => RepoError::Other(format!("corrupt row: {e}")),
        },
        Ok(None) => RepoError::NotFound,
        Err(e) => db_error(e),
    }
}

/// One transaction: the operation row, the state (written or deleted) and the lock, only while
/// the operation is unfinished and held at `op.lease_epoch`. A repeat under the same lease
/// finds it ended and changes nothing; a writer whose lease was taken over is `Fenced` and
/// changes nothing either, so neither can overwrite a state another gateway's end (or a newer
/// operation) has moved on since.
pub(super) async fn finish_operation(
    repo: &SeaRepository,
    op: &Operation,
    state: Option<&State>,
    events: &[NewEvent],
) -> Result<(), RepoError> {
    if repo.backend == Backend::Sqlite {
        // The common case in two round trips (`finish_batch.rs`); when it writes nothing, the
        // transaction below finds out why.
        match super::finish_batch::try_finish(repo, op, state, events).await {
            Ok(true) => {
                super::events::count_appended(events.len());
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(error = %e, "two-round-trip end failed; using the transaction")
            }
        }
    }
    let statements =
        super::finish_batch::end_statements(repo.db.get_database_backend(), op, state, events)?;
    let _gate = repo.write_gate().await;
    let txn = repo.db.begin().await.map_err(db_error)?;
    let result = async {
        let changed = txn
            .execute(statements.update)
            .await
            .map_err(db_error)?
            .rows_affected();
        if changed == 0 {
            // Ended under this lease already (a repeat): nothing to do.
            return match leases::lease_and_status(&txn, op.uuid).await? {
                Some((epoch, status))
                    if epoch == op.lease_epoch && !UNFINISHED.contains(&status.as_str()) =>
                {
                    Ok(0)
                }
                Some(_) => Err(RepoError::Fenced(op.uuid)),
                None => Err(RepoError::NotFound),
            };
        }
        if repo.backend == Backend::Postgres {
            // Delivered to every listening gateway when (and only if) this transaction commits.
            crate::notify::announce_end(&txn, op.uuid).await?;
        }
        for statement in statements.rest {
            txn.execute(statement).await.map_err(db_error)?;
        }
        Ok(events.len())
    }
    .await;
    let appended = end_transaction(txn, result).await?;
    super::events::count_appended(appended);
    Ok(())
}
