//! Policy decisions: written in batches after each evaluation, read by admins with a filter.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Order, Query};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use snapgate_core::ports::repository::{DecisionFilter, DecisionRecord};
use snapgate_core::ports::RepoError;

use super::{end_transaction, SeaRepository};
use crate::convert::{decision_from_row, decision_row, micros};
use crate::entity::policy_decisions;
use crate::errors::db_error;

use policy_decisions::Column as D;

/// Rows per INSERT: 15 columns each keeps a statement far below the bind-parameter limits of
/// both backends.
const BATCH: usize = 500;

/// Inserts all records or none. The caller holds the SQLite write gate.
pub(super) async fn record(
    repo: &SeaRepository,
    records: &[DecisionRecord],
) -> Result<(), RepoError> {
    if records.is_empty() {
        return Ok(());
    }
    let rows = records
        .iter()
        .map(decision_row)
        .collect::<Result<Vec<_>, _>>()?;
    let txn = repo.db.begin().await.map_err(db_error)?;
    let result = async {
        for chunk in rows.chunks(BATCH) {
            policy_decisions::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }
    .await;
    end_transaction(txn, result).await
}

/// Newest first. `since` is inclusive and `until` exclusive; a `limit` of 0 means no limit.
pub(super) async fn list(
    db: &DatabaseConnection,
    filter: &DecisionFilter,
) -> Result<Vec<DecisionRecord>, RepoError> {
    let mut query = policy_decisions::Entity::find();
    if let Some(tenant) = &filter.tenant {
        query = query.filter(D::Tenant.eq(tenant.as_str()));
    }
    if let Some(plugin) = &filter.plugin {
        query = query.filter(D::Plugin.eq(plugin.as_str()));
    }
    if let Some(outcome) = &filter.outcome {
        query = query.filter(D::Outcome.eq(outcome.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(D::Time.gte(micros(since)));
    }
    if let Some(until) = filter.until {
        query = query.filter(D::Time.lt(micros(until)));
    }
    query = query
        .order_by(D::Time, Order::Desc)
        .order_by(D::Id, Order::Desc);
    if filter.limit > 0 {
        query = query.limit(filter.limit);
    }
    query
        .all(db)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(decision_from_row)
        .collect()
}

/// Deletes at most `batch` decisions older than `before`, oldest first (the time index finds
/// them). The caller holds the SQLite write gate.
pub(super) async fn purge(
    db: &DatabaseConnection,
    before: DateTime<Utc>,
    batch: u64,
) -> Result<u64, RepoError> {
    let oldest = Query::select()
        .column(D::Id)
        .from(policy_decisions::Entity)
        .and_where(D::Time.lt(micros(before)))
        .order_by(D::Time, Order::Asc)
        .limit(batch)
        .to_owned();
    let deleted = policy_decisions::Entity::delete_many()
        .filter(D::Id.in_subquery(oldest))
        .exec(db)
        .await
        .map_err(db_error)?;
    Ok(deleted.rows_affected)
}
