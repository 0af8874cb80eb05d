//! The event log (issue 12, point 4): appends, the sequencer's pass, reads and the purge.
//!
//! Appending is one multi-row INSERT with `seq` NULL: it takes no lock and reads nothing, so it
//! can sit inside an operation end's transaction without serializing ends (an earlier design
//! did, behind an advisory lock, and a quota race let an 11th save through). Only the sequencer
//! writes `seq`: one pass at a time (a transaction-scoped advisory lock on PostgreSQL; SQLite
//! has one writer), numbering the committed un-numbered rows in `id` order right after the
//! current maximum. So the numbered rows are always exactly `1..=max`, and a reader that has
//! read up to `k` never later finds a new row at or below `k`.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Order, Query};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
    TransactionTrait,
};
use snapgate_core::events::{Event, EventFilter, EventKind, NewEvent};
use snapgate_core::ports::RepoError;

use super::{end_transaction, SeaRepository};
use crate::connect::Backend;
use crate::entity::events;
use crate::errors::db_error;

use events::Column as E;

/// Only sequencers take it, never an appender. ("snapevnt")
const SEQUENCER_LOCK_KEY: i64 = 0x736e_6170_6576_6e74;

/// The notification channel sequencers announce their new maximum on.
pub(crate) const CHANNEL: &str = "snapgate_events";

/// Rows per INSERT: 10 columns each stays far below both backends' bind-parameter limits.
pub(super) const INSERT_CHUNK: usize = 500;

pub(super) fn row(event: &NewEvent) -> events::ActiveModel {
    events::ActiveModel {
        id: NotSet,
        seq: Set(None),
        uuid: Set(event.id),
        kind: Set(event.kind.as_str().to_owned()),
        tenant_id: Set(event.tenant.clone()),
        instance_uuid: Set(event.instance_uuid),
        state_uuid: Set(event.state_uuid),
        operation_uuid: Set(event.operation_uuid),
        occurred_at: Set(event.occurred_at.timestamp_micros()),
        data: Set(event.data.to_string()),
    }
}

fn from_row(row: events::Model) -> Result<Event, RepoError> {
    let corrupt = |what: &str| RepoError::Other(format!("corrupt event {}: {what}", row.id));
    Ok(Event {
        seq: row.seq.ok_or_else(|| corrupt("not numbered"))?,
        id: row.uuid,
        kind: row.kind.parse::<EventKind>().map_err(|e| corrupt(&e))?,
        tenant: row.tenant_id.clone(),
        instance_uuid: row.instance_uuid,
        state_uuid: row.state_uuid,
        operation_uuid: row.operation_uuid,
        occurred_at: DateTime::from_timestamp_micros(row.occurred_at)
            .ok_or_else(|| corrupt("time out of range"))?,
        data: serde_json::from_str(&row.data).map_err(|e| corrupt(&e.to_string()))?,
    })
}

/// Plain INSERTs on `conn` (a transaction of the caller's, or the pool). The caller holds the
/// SQLite write gate.
pub(crate) async fn insert<C: ConnectionTrait>(
    conn: &C,
    list: &[NewEvent],
) -> Result<(), RepoError> {
    for chunk in list.chunks(INSERT_CHUNK) {
        events::Entity::insert_many(chunk.iter().map(row))
            .exec_without_returning(conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// Counts events whose transaction committed.
pub(crate) fn count_appended(n: usize) {
    if n > 0 {
        metrics::counter!("snapgate_events_appended_total").increment(n as u64);
    }
}

pub(super) async fn append(repo: &SeaRepository, list: &[NewEvent]) -> Result<(), RepoError> {
    if list.is_empty() {
        return Ok(());
    }
    let _gate = repo.write_gate().await;
    if list.len() <= INSERT_CHUNK {
        insert(&repo.db, list).await?;
    } else {
        let txn = repo.db.begin().await.map_err(db_error)?;
        let result = insert(&txn, list).await;
        end_transaction(txn, result).await?;
    }
    count_appended(list.len());
    Ok(())
}

pub(super) async fn after<C: ConnectionTrait>(
    conn: &C,
    after: i64,
    filter: &EventFilter,
    limit: u64,
) -> Result<Vec<Event>, RepoError> {
    let mut query = events::Entity::find().filter(E::Seq.gt(after));
    if let Some(tenant) = &filter.tenant {
        query = query.filter(E::TenantId.eq(tenant.as_str()));
    }
    if !filter.kinds.is_empty() {
        query = query.filter(E::Kind.is_in(filter.kinds.iter().map(|k| k.as_str())));
    }
    if let Some(instance) = filter.instance {
        query = query.filter(E::InstanceUuid.eq(instance));
    }
    query
        .order_by(E::Seq, Order::Asc)
        .limit(limit)
        .all(conn)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(from_row)
        .collect()
}

pub(super) async fn last_seq<C: ConnectionTrait>(conn: &C) -> Result<i64, RepoError> {
    let stmt = Statement::from_string(
        conn.get_database_backend(),
        "SELECT COALESCE(MAX(seq), 0) AS m FROM events",
    );
    let row = conn.query_one(stmt).await.map_err(db_error)?;
    match row {
        Some(row) => row.try_get::<i64>("", "m").map_err(db_error),
        None => Ok(0),
    }
}

/// One sequencer pass (see the module's comment). On PostgreSQL the new maximum is announced
/// with `pg_notify` in the same transaction, so it leaves exactly when the numbers are visible.
pub(super) async fn sequence(repo: &SeaRepository, batch: u64) -> Result<i64, RepoError> {
    // Most passes find nothing to number: a read (the partial index) instead of a write
    // transaction, and on SQLite no turn at the write gate.
    let pending = events::Entity::find()
        .select_only()
        .column(E::Id)
        .filter(E::Seq.is_null())
        .limit(1)
        .into_tuple::<i64>()
        .one(&repo.db)
        .await
        .map_err(db_error)?;
    if pending.is_none() {
        return last_seq(&repo.db).await;
    }
    let _gate = repo.write_gate().await;
    let backend = repo.db.get_database_backend();
    let txn = repo.db.begin().await.map_err(db_error)?;
    let result = async {
        if repo.backend == Backend::Postgres {
            let lock = Statement::from_sql_and_values(
                backend,
                "SELECT pg_advisory_xact_lock($1)",
                [SEQUENCER_LOCK_KEY.into()],
            );
            txn.execute(lock).await.map_err(db_error)?;
        }
        // `batch` is ours, not a client's: inlined so one text serves both placeholder styles.
        // Read-committed: this statement's snapshot is taken after the lock, so it sees the
        // numbers of the pass before.
        let number = format!(
            "WITH top AS (SELECT COALESCE(MAX(seq), 0) AS m FROM events), \
                  next AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM \
                             (SELECT id FROM events WHERE seq IS NULL ORDER BY id LIMIT {batch}) \
                           AS pending) \
             UPDATE events SET seq = (SELECT m FROM top) + next.n \
             FROM next WHERE events.id = next.id"
        );
        let numbered = txn
            .execute(Statement::from_string(backend, number))
            .await
            .map_err(db_error)?
            .rows_affected();
        let max = last_seq(&txn).await?;
        if numbered > 0 {
            metrics::counter!("snapgate_events_sequenced_total").increment(numbered);
            if repo.backend == Backend::Postgres {
                let notify = Statement::from_sql_and_values(
                    backend,
                    "SELECT pg_notify($1, $2)",
                    [CHANNEL.into(), max.to_string().into()],
                );
                txn.execute(notify).await.map_err(db_error)?;
            }
        }
        Ok(max)
    }
    .await;
    end_transaction(txn, result).await
}

/// Deletes at most `batch` numbered events that occurred before `before`, oldest first. The
/// newest numbered event is always kept: the next pass numbers after the maximum, and a log
/// emptied by retention would start again at 1 under readers resuming from a higher `seq`.
pub(super) async fn purge(
    repo: &SeaRepository,
    before: DateTime<Utc>,
    batch: u64,
) -> Result<u64, RepoError> {
    let _gate = repo.write_gate().await;
    let newest = last_seq(&repo.db).await?;
    let oldest = Query::select()
        .column(E::Id)
        .from(events::Entity)
        .and_where(E::OccurredAt.lt(before.timestamp_micros()))
        .and_where(E::Seq.is_not_null())
        .and_where(E::Seq.lt(newest))
        .order_by(E::OccurredAt, Order::Asc)
        .limit(batch)
        .to_owned();
    let deleted = events::Entity::delete_many()
        .filter(E::Id.in_subquery(oldest))
        .exec(&repo.db)
        .await
        .map_err(db_error)?;
    Ok(deleted.rows_affected)
}
