//! The accepted save's write in one round trip: the state row, its operation and the instance
//! lock, all or nothing, committed before the 202 (issue 11).
//!
//! [`super::transitions::begin_save`] — a transaction of three inserts, five round trips to the
//! database (`BEGIN`, three `INSERT`s, `COMMIT`) — stays the reference and the fallback:
//! whenever this path inserts nothing (a duplicate name, a held lock, a race it lost, an error),
//! it has left nothing behind, and the caller runs that transaction, which decides exactly and
//! says why. So this path only has to be right when it succeeds.
//!
//! - **PostgreSQL**: one statement (data-modifying CTEs), atomic on its own. The state is
//!   inserted only if no lock row is visible, the operation only if the state was, the lock only
//!   if the operation was. A lock taken meanwhile by another transaction makes the lock's plain
//!   `INSERT` fail on its primary key, which undoes the whole statement.
//! - **SQLite**: one batch sent to the connection's worker thread at once (`BEGIN IMMEDIATE`,
//!   the same three conditional inserts, `SELECT changes()`, `COMMIT`), under the write gate,
//!   so no other writer runs in between and the conditions are exact. A batch that stops
//!   part-way (an error, a cancelled future) closes its connection, which rolls back.
//!
//! Columns come from the same `state_row` / `operation_row` as the transaction, so a new
//! column follows by itself; **a new table written by `begin_save` must be added here too.**

use sea_orm::sea_query::Values;
use sea_orm::sqlx::sqlite::Sqlite;
use sea_orm::sqlx::{self, pool::PoolConnection, Row};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ConnectionTrait, DbBackend, EntityName, EntityTrait, IdenStatic,
    Iterable, Statement, Value,
};
use sea_query_binder::SqlxValues;
use snapgate_core::ports::RepoError;
use snapgate_core::{Operation, State};

use super::SeaRepository;
use crate::connect::Backend;
use crate::convert::{micros, operation_row, state_row};
use crate::entity::instance_locks;
use crate::errors::{db_error, sqlx_error};

/// Inserts the three rows, or nothing. `Ok(true)`: committed. `Ok(false)`: nothing was
/// written; run the transaction to find out why.
pub(super) async fn try_begin_save(
    repo: &SeaRepository,
    state: &State,
    op: &Operation,
) -> Result<bool, RepoError> {
    let lock = instance_locks::ActiveModel {
        instance_uuid: ActiveValue::Set(op.instance_uuid),
        operation_uuid: ActiveValue::Set(op.uuid),
        acquired_at: ActiveValue::Set(micros(op.created_at)),
    };
    let mut values = Vec::new();
    let state = Insert::of(&state_row(state)?, &mut values);
    let operation = Insert::of(&operation_row(op), &mut values);
    let lock = Insert::of(&lock, &mut values);
    // The lock row's first column is the instance.
    let instance = lock.first;
    match repo.backend {
        Backend::Postgres => {
            let sql = format!(
                "WITH s AS ({} WHERE NOT EXISTS (SELECT 1 FROM instance_locks WHERE instance_uuid = ${instance}) \
                 ON CONFLICT DO NOTHING RETURNING 1), \
                 o AS ({} FROM s RETURNING 1), \
                 l AS ({} FROM o RETURNING 1) \
                 SELECT count(*) FROM l",
                state.sql, operation.sql, lock.sql
            );
            let row = repo
                .db
                .query_one(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    sql,
                    values,
                ))
                .await
                .map_err(db_error)?;
            let inserted: i64 = match row {
                Some(row) => row.try_get_by_index(0).map_err(db_error)?,
                None => 0,
            };
            Ok(inserted == 1)
        }
        Backend::Sqlite => {
            let sql = format!(
                "BEGIN IMMEDIATE; \
                 {} WHERE NOT EXISTS (SELECT 1 FROM instance_locks WHERE instance_uuid = ${instance}) \
                 ON CONFLICT DO NOTHING; \
                 {} WHERE changes() = 1; \
                 {} WHERE changes() = 1; \
                 SELECT changes(); \
                 COMMIT;",
                state.sql, operation.sql, lock.sql
            );
            let _gate = repo.write_gate().await;
            let pool = repo.db.get_sqlite_connection_pool();
            let mut conn = Closing(Some(pool.acquire().await.map_err(sqlx_error)?));
            let rows = sqlx::query_with(&sql, SqlxValues(Values(values)))
                .fetch_all(conn.get())
                .await
                .map_err(sqlx_error)?;
            conn.keep();
            let inserted: i64 = match rows.first() {
                Some(row) => row.try_get(0).map_err(sqlx_error)?,
                None => 0,
            };
            Ok(inserted == 1)
        }
    }
}

/// `INSERT INTO table (columns) SELECT $first, …` over the columns an active model sets; the
/// values are appended to the statement's list, numbered from its current length.
struct Insert {
    sql: String,
    first: usize,
}

impl Insert {
    fn of<A: ActiveModelTrait>(row: &A, values: &mut Vec<Value>) -> Insert {
        let first = values.len() + 1;
        let mut columns = Vec::new();
        for column in <A::Entity as EntityTrait>::Column::iter() {
            if let ActiveValue::Set(v) | ActiveValue::Unchanged(v) = row.get(column) {
                columns.push(format!("\"{}\"", column.as_str()));
                values.push(v);
            }
        }
        let params: Vec<String> = (first..first + columns.len())
            .map(|i| format!("${i}"))
            .collect();
        Insert {
            sql: format!(
                "INSERT INTO \"{}\" ({}) SELECT {}",
                A::Entity::default().table_name(),
                columns.join(", "),
                params.join(", ")
            ),
            first,
        }
    }
}

/// A pooled SQLite connection that is closed (so its open transaction rolls back), not
/// returned to the pool, unless the batch ran to its end: an error or a cancelled future may
/// leave the batch's transaction open part-way.
pub(super) struct Closing(pub(super) Option<PoolConnection<Sqlite>>);

impl Closing {
    /// The batch ran to its end: the connection goes back to the pool.
    pub(super) fn keep(&mut self) {
        self.0.take();
    }

    pub(super) fn get(&mut self) -> &mut sea_orm::sqlx::SqliteConnection {
        self.0.as_mut().expect("held until kept")
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            tracing::warn!("closing a database connection whose write stopped part-way");
            drop(conn.detach());
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use chrono::{SubsecRound, Utc};
    use snapgate_core::ports::Repository;
    use snapgate_core::{OperationKind, OperationStatus, SnapshotKind, StateStatus};
    use uuid::Uuid;

    use super::*;
    use crate::testing::{TestBackend, TestStore};

    /// A save's state and operation as the service makes them (also `finish_batch`'s tests).
    pub(in crate::repo) fn save(instance: Uuid, name: &str) -> (State, Operation) {
        let now = Utc::now().trunc_subsecs(6);
        let state = State {
            uuid: Uuid::now_v7(),
            name: name.to_owned(),
            date: now,
            instance_uuid: instance,
            tenant_id: "tenant-a".to_owned(),
            status: StateStatus::Saving,
            description: Some("d".to_owned()),
            host: "host-a".to_owned(),
            size_bytes: None,
            memory_bytes: None,
            includes_memory: true,
            disk_formats: vec!["qcow2".to_owned()],
            cpu: None,
            snapshot_kind: SnapshotKind::Internal,
            parent: None,
            error: None,
            updated_at: now,
            cpu_xml: None,
            snapshot_xml: None,
            // Columns added after this file was written travel the one-round-trip path too.
            expires_at: Some(now + chrono::Duration::days(1)),
            schedule_id: Some(Uuid::now_v7()),
        };
        let op = Operation {
            uuid: Uuid::now_v7(),
            kind: OperationKind::Save,
            status: OperationStatus::Running,
            instance_uuid: instance,
            state_uuid: state.uuid,
            tenant_id: state.tenant_id.clone(),
            host: state.host.clone(),
            error: None,
            created_at: now,
            updated_at: now,
            started_at: Some(now),
            finished_at: None,
            reserved_bytes: 1 << 20,
            lease_epoch: 0,
            lease_owner: Some("gateway-a/1".to_owned()),
            progress: None,
            // Read back from its kind and status: a running save may be cancelled.
            may_cancel: true,
            cancel_requested_at: None,
        };
        (state, op)
    }

    /// The common case is written in one round trip; a save it cannot take (a held lock, a
    /// taken name) leaves no row behind — no state, no operation, no lock — so the
    /// transaction that runs next decides alone.
    async fn writes_all_or_nothing(backend: TestBackend) {
        let store = TestStore::new(backend).await.unwrap();
        let repo = store.repository().await.unwrap();
        let instance = Uuid::new_v4();

        let (first, first_op) = save(instance, "first");
        assert!(try_begin_save(&repo, &first, &first_op).await.unwrap());
        assert_eq!(
            repo.get_state(first.uuid).await.unwrap(),
            Some(first.clone())
        );
        assert_eq!(
            repo.get_operation(first_op.uuid).await.unwrap(),
            Some(first_op.clone())
        );

        // The instance is busy: nothing is written.
        let (second, second_op) = save(instance, "second");
        assert!(!try_begin_save(&repo, &second, &second_op).await.unwrap());
        assert_eq!(repo.get_state(second.uuid).await.unwrap(), None);
        assert_eq!(repo.get_operation(second_op.uuid).await.unwrap(), None);

        // The first ends; a save under its name is refused without taking the lock, so the
        // next one goes through in one round trip again.
        let done = Operation {
            status: OperationStatus::Succeeded,
            finished_at: Some(first_op.created_at),
            ..first_op.clone()
        };
        let available = State {
            status: StateStatus::Available,
            ..first.clone()
        };
        repo.finish_operation(&done, Some(&available))
            .await
            .unwrap();
        let (again, again_op) = save(instance, "first");
        assert!(!try_begin_save(&repo, &again, &again_op).await.unwrap());
        assert_eq!(repo.get_operation(again_op.uuid).await.unwrap(), None);
        assert!(try_begin_save(&repo, &second, &second_op).await.unwrap());
        assert_eq!(repo.count_states(instance).await.unwrap(), 2);
        store.cleanup().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_writes_all_or_nothing() {
        writes_all_or_nothing(TestBackend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_writes_all_or_nothing() {
        writes_all_or_nothing(TestBackend::Postgres).await;
    }
}
