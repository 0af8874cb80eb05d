//! An operation's end on SQLite in two round trips instead of six (issue 11).
//!
//! The end's transaction (`transitions::finish_operation`: `BEGIN`, the operation's update, the
//! state's upsert or delete, the lock's delete, the events, `COMMIT`) holds SQLite's write gate
//! for six hand-offs to the connection's worker thread, and the next save's acceptance waits
//! behind it (docs/BENCHMARKS.md, "States API latency"). Here the same statements go in two
//! batches on one connection, under the gate:
//!
//! 1. `BEGIN IMMEDIATE`, the operation's conditional update, `SELECT changes()`;
//! 2. when it changed the row: the state, the lock, the events, `COMMIT`; otherwise `ROLLBACK`,
//!    and the caller runs the transaction, which tells a repeat from a fenced or unknown
//!    operation. So this path only has to be right when it writes.
//!
//! A batch that stops part-way (an error, a cancelled future) closes its connection, which
//! rolls back (`Closing`). The statements are the transaction's own ([`end_statements`]), so
//! the two cannot drift apart in what they write.

use sea_orm::sea_query::{OnConflict, Values};
use sea_orm::sqlx::{self, Row};
use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, Iterable, QueryFilter, QueryTrait, Statement, Value,
};
use sea_query_binder::SqlxValues;
use snapgate_core::events::NewEvent;
use snapgate_core::ports::RepoError;
use snapgate_core::{Operation, State};

use super::accept_save::Closing;
use super::transitions::UNFINISHED;
use super::SeaRepository;
use crate::convert::{operation_update, state_row};
use crate::entity::{events, instance_locks, instance_states, operations};
use crate::errors::sqlx_error;

/// The statements of an operation's end, in order: `update` (the operation's row, under its
/// lease and only while unfinished), then `rest` (the state's upsert or delete, this
/// operation's lock, the events), which only run when `update` changed the row. The
/// transaction (`transitions::finish_operation`) and the batches below run these same
/// statements, so the two paths cannot write different things.
pub(super) struct EndStatements {
    pub update: Statement,
    pub rest: Vec<Statement>,
}

pub(super) fn end_statements(
    backend: DbBackend,
    op: &Operation,
    state: Option<&State>,
    list: &[NewEvent],
) -> Result<EndStatements, RepoError> {
    let update = operations::Entity::update_many()
        .set(operation_update(op))
        .filter(operations::Column::Uuid.eq(op.uuid))
        .filter(operations::Column::LeaseEpoch.eq(op.lease_epoch))
        .filter(operations::Column::Status.is_in(UNFINISHED))
        .build(backend);
    let mut rest = Vec::new();
    rest.push(match state {
        Some(state) => {
            let columns = instance_states::Column::iter()
                .filter(|c| !matches!(c, instance_states::Column::Uuid));
            instance_states::Entity::insert(state_row(state)?)
                .on_conflict(
                    OnConflict::column(instance_states::Column::Uuid)
                        .update_columns(columns)
                        .to_owned(),
                )
                .build(backend)
        }
        None => instance_states::Entity::delete_by_id(op.state_uuid).build(backend),
    });
    // Only this operation's lock: never one a newer operation holds.
    rest.push(
        instance_locks::Entity::delete_many()
            .filter(instance_locks::Column::InstanceUuid.eq(op.instance_uuid))
            .filter(instance_locks::Column::OperationUuid.eq(op.uuid))
            .build(backend),
    );
    // The outbox: plain inserts (no lock, no read), committed with the end or not at all.
    for chunk in list.chunks(super::events::INSERT_CHUNK) {
        rest.push(events::Entity::insert_many(chunk.iter().map(super::events::row)).build(backend));
    }
    Ok(EndStatements { update, rest })
}

/// Ends `op` as `transitions::finish_operation` does. `Ok(true)`: committed. `Ok(false)`: the
/// operation's row was not updated and nothing was written; run the transaction.
pub(super) async fn try_finish(
    repo: &SeaRepository,
    op: &Operation,
    state: Option<&State>,
    list: &[NewEvent],
) -> Result<bool, RepoError> {
    let EndStatements { update, rest } = end_statements(DbBackend::Sqlite, op, state, list)?;
    let _gate = repo.write_gate().await;
    let pool = repo.db.get_sqlite_connection_pool();
    let mut conn = Closing(Some(pool.acquire().await.map_err(sqlx_error)?));
    let (sql, values) = batch("BEGIN IMMEDIATE", [update], "SELECT changes()");
    let rows = sqlx::query_with(&sql, SqlxValues(Values(values)))
        .fetch_all(conn.get())
        .await
        .map_err(sqlx_error)?;
    let updated: i64 = match rows.first() {
        Some(row) => row.try_get(0).map_err(sqlx_error)?,
        None => 0,
    };
    if updated != 1 {
        sqlx::query("ROLLBACK")
            .execute(conn.get())
            .await
            .map_err(sqlx_error)?;
        conn.keep();
        return Ok(false);
    }
    let (sql, values) = batch("", rest, "COMMIT");
    sqlx::query_with(&sql, SqlxValues(Values(values)))
        .execute(conn.get())
        .await
        .map_err(sqlx_error)?;
    conn.keep();
    Ok(true)
}

/// `first; statements…; last` as one text, with the statements' values in order: sea-query's
/// SQLite placeholders are anonymous (`?`), which sqlx numbers across the statements of a batch.
fn batch(
    first: &str,
    statements: impl IntoIterator<Item = Statement>,
    last: &str,
) -> (String, Vec<Value>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    if !first.is_empty() {
        sql.push_str(first);
        sql.push_str("; ");
    }
    for s in statements {
        sql.push_str(&s.sql);
        sql.push_str("; ");
        if let Some(v) = s.values {
            values.extend(v.0);
        }
    }
    sql.push_str(last);
    sql.push(';');
    (sql, values)
}

#[cfg(test)]
mod tests {
    use sea_orm::{EntityTrait, PaginatorTrait};
    use snapgate_core::events::{EventKind, NewEvent};
    use snapgate_core::ports::{RepoError, Repository};
    use snapgate_core::{Operation, OperationStatus, State, StateStatus};
    use uuid::Uuid;

    use super::try_finish;
    use crate::entity::{events, instance_locks};
    use crate::repo::accept_save::tests::save;
    use crate::repo::accept_save::try_begin_save;
    use crate::repo::SeaRepository;
    use crate::testing::{TestBackend, TestStore};

    async fn counts(repo: &SeaRepository) -> (u64, u64) {
        (
            events::Entity::find().count(&repo.db).await.unwrap(),
            instance_locks::Entity::find()
                .count(&repo.db)
                .await
                .unwrap(),
        )
    }

    fn saved_event(op: &Operation) -> NewEvent {
        NewEvent {
            operation_uuid: Some(op.uuid),
            ..NewEvent::new(
                EventKind::StateSaved,
                op.tenant_id.clone(),
                serde_json::json!({}),
            )
        }
    }

    /// The two batches write what the transaction writes (operation, state, lock, events),
    /// and write nothing at all when the operation's row is not theirs to end: a repeat (no
    /// event twice), another lease's, or an unknown operation. The transaction, run after such
    /// a refusal, tells those apart as before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_end_writes_everything_once_or_nothing() {
        let store = TestStore::new(TestBackend::Sqlite).await.unwrap();
        let repo = store.repository().await.unwrap();
        let instance = Uuid::new_v4();

        let (state, op) = save(instance, "first");
        assert!(try_begin_save(&repo, &state, &op).await.unwrap());
        assert_eq!(counts(&repo).await, (0, 1));

        // Another lease's end (a gateway whose work was taken over) writes nothing.
        let fenced = Operation {
            lease_epoch: 1,
            status: OperationStatus::Succeeded,
            ..op.clone()
        };
        assert!(
            !try_finish(&repo, &fenced, Some(&state), &[saved_event(&op)])
                .await
                .unwrap()
        );
        assert_eq!(counts(&repo).await, (0, 1));
        assert_eq!(repo.get_operation(op.uuid).await.unwrap(), Some(op.clone()));

        let done = Operation {
            status: OperationStatus::Succeeded,
            finished_at: Some(op.created_at),
            may_cancel: false,
            ..op.clone()
        };
        let available = State {
            status: StateStatus::Available,
            size_bytes: Some(42),
            ..state.clone()
        };
        assert!(
            try_finish(&repo, &done, Some(&available), &[saved_event(&op)])
                .await
                .unwrap()
        );
        assert_eq!(
            repo.get_operation(op.uuid).await.unwrap(),
            Some(done.clone())
        );
        assert_eq!(
            repo.get_state(state.uuid).await.unwrap(),
            Some(available.clone())
        );
        assert_eq!(counts(&repo).await, (1, 0), "one event, the lock released");

        // A repeat: nothing more, and the transaction reports it done.
        assert!(
            !try_finish(&repo, &done, Some(&available), &[saved_event(&op)])
                .await
                .unwrap()
        );
        assert_eq!(counts(&repo).await, (1, 0));
        repo.finish_operation_logged(&done, Some(&available), &[saved_event(&op)])
            .await
            .unwrap();
        assert_eq!(counts(&repo).await, (1, 0), "no event twice");
        assert!(matches!(
            repo.finish_operation_logged(&fenced, Some(&available), &[])
                .await,
            Err(RepoError::Fenced(_))
        ));

        // An end without a state (a cancelled save) deletes the state row.
        let (gone, gone_op) = save(instance, "second");
        assert!(try_begin_save(&repo, &gone, &gone_op).await.unwrap());
        let cancelled = Operation {
            status: OperationStatus::Failed,
            finished_at: Some(gone_op.created_at),
            may_cancel: false,
            ..gone_op.clone()
        };
        assert!(try_finish(&repo, &cancelled, None, &[]).await.unwrap());
        assert_eq!(repo.get_state(gone.uuid).await.unwrap(), None);
        assert_eq!(counts(&repo).await, (1, 0));

        // An unknown operation: nothing written.
        let (_, unknown) = save(Uuid::new_v4(), "never begun");
        assert!(!try_finish(&repo, &unknown, None, &[]).await.unwrap());
        assert_eq!(counts(&repo).await, (1, 0));
        store.cleanup().await.unwrap();
    }
}
