//! `SeaRepository`: the `Repository` port over sea-orm. The trait impl only delegates; each
//! concern lives in its own file.

mod accept_save;
mod decisions;
mod events;
mod finish_batch;
mod idempotency;
mod leases;
mod lifecycle;
mod placements;
mod progress;
mod reads;
mod schedules;
mod tenants;
mod transitions;
mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, Statement, TransactionTrait,
};
use snapgate_core::events::{Event, EventFilter, NewEvent};
use snapgate_core::ports::repository::{DecisionFilter, DecisionRecord};
use snapgate_core::ports::{
    CancelRequest, EventFeedSource, EventLog, EventSeqFeed, IdempotencyClaim, KeyClaim,
    KeyedAnswer, ListPage, OperationEndFeed, Placement, PlacementStore, QuotaLimits, RecentSave,
    RepoError, Repository, TenantTotals,
};
use snapgate_core::{Operation, Progress, State, StateStatus};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use crate::checkpoint::{Checkpointer, WriteCounter};
use crate::connect::{self, Backend, StoreOptions};
use crate::errors::db_error;

pub(crate) use events::CHANNEL as EVENTS_CHANNEL;

/// Any replica running migrations takes this PostgreSQL advisory lock first, so two gateways
/// starting together do not both create the tables.
const MIGRATION_LOCK_KEY: i64 = 0x736e_6170_6761_7465; // "snapgate"

#[derive(Clone)]
pub struct SeaRepository {
    db: DatabaseConnection,
    backend: Backend,
    /// SQLite allows one writer; writers queue here rather than racing for the file lock
    /// (a deferred transaction that upgrades to a writer can fail with SQLITE_BUSY at once,
    /// busy timeout or not). `None` on PostgreSQL, whose row locks do the job.
    write_gate: Option<Arc<Mutex<()>>>,
    /// SQLite writes, for the background WAL checkpointer (`checkpoint.rs`).
    writes: Arc<WriteCounter>,
    _checkpointer: Option<Arc<Checkpointer>>,
}

impl std::fmt::Debug for SeaRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeaRepository")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl SeaRepository {
    /// Opens `sqlite://PATH?mode=rwc` (the file and its directory are created when missing)
    /// or `postgres://…`. Does not run migrations: call [`SeaRepository::migrate`].
    pub async fn connect(url: &str) -> Result<Self, RepoError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self, RepoError> {
        let backend = Backend::of_url(url)?;
        let db = connect::open(url, options).await?;
        let sqlite = backend == Backend::Sqlite;
        let write_gate = sqlite.then(|| Arc::new(Mutex::new(())));
        let writes = Arc::new(WriteCounter::default());
        let checkpointer =
            sqlite.then(|| Arc::new(Checkpointer::start(db.clone(), Arc::clone(&writes))));
        Ok(Self {
            db,
            backend,
            write_gate,
            writes,
            _checkpointer: checkpointer,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The sea-orm connection, for tools and tests that need plain SQL.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The names of the migrations not applied yet (`snapgate doctor` reports them).
    pub async fn pending_migrations(&self) -> Result<Vec<String>, RepoError> {
        Ok(Migrator::get_pending_migrations(&self.db)
            .await
            .map_err(db_error)?
            .iter()
            .map(|m| m.name().to_owned())
            .collect())
    }

    /// Runs pending migrations (idempotent; safe to call from several replicas at once).
    pub async fn migrate(&self) -> Result<(), RepoError> {
        let _gate = self.write_gate().await;
        match self.backend {
            Backend::Sqlite => Migrator::up(&self.db, None).await.map_err(db_error),
            Backend::Postgres => {
                let txn = self.db.begin().await.map_err(db_error)?;
                let lock = Statement::from_sql_and_values(
                    self.db.get_database_backend(),
                    "SELECT pg_advisory_xact_lock($1)",
                    [MIGRATION_LOCK_KEY.into()],
                );
                let result = match txn.execute(lock).await {
                    Ok(_) => Migrator::up(&txn, None).await.map_err(db_error),
                    Err(e) => Err(db_error(e)),
                };
                end_transaction(txn, result).await
            }
        }
    }

    /// Closes the pool (pending queries finish first).
    pub async fn close(&self) {
        if let Err(e) = self.db.close_by_ref().await {
            tracing::warn!(error = %e, "closing the database pool");
        }
    }

    /// Held for the whole of a write transaction on SQLite; a no-op on PostgreSQL.
    async fn write_gate(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.write_gate {
            Some(gate) => {
                self.writes.wrote();
                Some(gate.lock().await)
            }
            None => None,
        }
    }
}

/// Commits on `Ok`, rolls back on `Err`.
async fn end_transaction<T>(
    txn: DatabaseTransaction,
    result: Result<T, RepoError>,
) -> Result<T, RepoError> {
    match result {
        Ok(value) => {
            txn.commit().await.map_err(db_error)?;
            Ok(value)
        }
        Err(e) => {
            rollback(txn).await;
            Err(e)
        }
    }
}

/// Queues, until `txn` ends, the creations of one `kind` (schedules, webhooks) for `tenant`, so
/// two gateways cannot both count below a per-tenant limit and both insert. PostgreSQL only:
/// on SQLite the write gate already lets one writer in at a time.
async fn lock_tenant_creations(
    repo: &SeaRepository,
    txn: &DatabaseTransaction,
    kind: &str,
    tenant: &str,
) -> Result<(), RepoError> {
    if repo.backend != Backend::Postgres {
        return Ok(());
    }
    txn.execute(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        [format!("snapgate.{kind}:{tenant}").into()],
    ))
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Rolls back now rather than on drop (sea-orm then only queues the rollback), so a SQLite
/// write lock is released before the next writer is let in. A failure is only logged: the
/// server rolls back a transaction whose connection is gone.
async fn rollback(txn: DatabaseTransaction) {
    if let Err(e) = txn.rollback().await {
        tracing::warn!(error = %e, "rollback failed");
    }
}

#[async_trait]
impl Repository for SeaRepository {
    async fn ping(&self) -> Result<(), RepoError> {
        self.db.ping().await.map_err(db_error)
    }

    async fn begin_keyed_save(
        &self,
        state: &State,
        op: &Operation,
        answer: Option<&KeyedAnswer>,
    ) -> Result<(), RepoError> {
        transitions::begin_save(self, state, op, answer).await
    }

    async fn begin_keyed_state_operation(
        &self,
        op: &Operation,
        from: &[StateStatus],
        to: StateStatus,
        answer: Option<&KeyedAnswer>,
    ) -> Result<(), RepoError> {
        transitions::begin_state_operation(self, op, from, to, answer).await
    }

    async fn claim_idempotency_key(
        &self,
        claim: &IdempotencyClaim,
        stale_before: DateTime<Utc>,
    ) -> Result<KeyClaim, RepoError> {
        idempotency::claim(self, claim, stale_before).await
    }

    async fn release_idempotency_key(&self, claim: &IdempotencyClaim) -> Result<(), RepoError> {
        let _gate = self.write_gate().await;
        idempotency::release(&self.db, claim).await
    }

    async fn purge_idempotency_keys(
        &self,
        now: DateTime<Utc>,
        batch: u64,
    ) -> Result<u64, RepoError> {
        let _gate = self.write_gate().await;
        idempotency::purge(&self.db, now, batch).await
    }

    async fn mark_running(&self, op: Uuid, epoch: i64, at: DateTime<Utc>) -> Result<(), RepoError> {
        leases::mark_running(self, op, epoch, at).await
    }

    async fn touch_operation(
        &self,
        op: Uuid,
        epoch: i64,
        at: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        leases::touch_operation(self, op, epoch, at).await
    }

    async fn take_over_operation(
        &self,
        op: Uuid,
        epoch: i64,
        stale_before: DateTime<Utc>,
        owner: &str,
        at: DateTime<Utc>,
    ) -> Result<Operation, RepoError> {
        leases::take_over_operation(self, op, epoch, stale_before, owner, at).await
    }

    async fn record_progress(
        &self,
        op: Uuid,
        epoch: i64,
        progress: &Progress,
    ) -> Result<(), RepoError> {
        progress::record_progress(self, op, epoch, progress).await
    }

    async fn request_cancel(
        &self,
        op: Uuid,
        at: DateTime<Utc>,
    ) -> Result<CancelRequest, RepoError> {
        progress::request_cancel(self, op, at).await
    }

    async fn cancel_requested(&self, op: Uuid) -> Result<Option<DateTime<Utc>>, RepoError> {
        progress::cancel_requested(self, op).await
    }

    async fn finish_operation_logged(
        &self,
        op: &Operation,
        state: Option<&State>,
        events: &[NewEvent],
    ) -> Result<(), RepoError> {
        transitions::finish_operation(self, op, state, events).await
    }

    async fn get_state(&self, uuid: Uuid) -> Result<Option<State>, RepoError> {
        reads::get_state(&self.db, uuid).await
    }

    async fn list_states(
        &self,
        instance: Uuid,
        limit: u64,
        marker: Option<Uuid>,
    ) -> Result<ListPage, RepoError> {
        reads::list_states(&self.db, instance, limit, marker).await
    }

    async fn count_states(&self, instance: Uuid) -> Result<u64, RepoError> {
        reads::count_states(&self.db, instance).await
    }

    async fn get_operation(&self, uuid: Uuid) -> Result<Option<Operation>, RepoError> {
        reads::get_operation(&self.db, uuid).await
    }

    async fn unfinished_operations(&self) -> Result<Vec<Operation>, RepoError> {
        reads::unfinished_operations(&self.db).await
    }

    async fn purge_operations(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let _gate = self.write_gate().await;
        reads::purge_operations(&self.db, before).await
    }

    async fn finished_operations(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, RepoError> {
        reads::finished_operations(&self.db, ids).await
    }

    async fn operation_end_feed(&self) -> Result<Option<Box<dyn OperationEndFeed>>, RepoError> {
        match self.backend {
            Backend::Postgres => {
                let feed = crate::notify::PgOperationEndFeed::listen(&self.db).await?;
                Ok(Some(Box::new(feed)))
            }
            Backend::Sqlite => Ok(None),
        }
    }

    async fn tenant_totals(&self) -> Result<Vec<TenantTotals>, RepoError> {
        reads::tenant_totals(&self.db).await
    }

    async fn saves_since(&self, since: DateTime<Utc>) -> Result<Vec<RecentSave>, RepoError> {
        reads::saves_since(&self.db, since).await
    }

    async fn states_of_instance(&self, instance: Uuid) -> Result<Vec<State>, RepoError> {
        reads::states_of_instance(&self.db, instance).await
    }

    async fn instance_owner(&self, instance: Uuid) -> Result<Option<String>, RepoError> {
        tenants::instance_owner(&self.db, instance).await
    }

    async fn set_instance_owner(
        &self,
        instance: Uuid,
        owner: Option<&str>,
        states_to: Option<&str>,
    ) -> Result<Vec<TenantTotals>, RepoError> {
        let _gate = self.write_gate().await;
        tenants::set_instance_owner(&self.db, instance, owner, states_to).await
    }

    async fn owner_assignments(&self) -> Result<Vec<(Uuid, String)>, RepoError> {
        tenants::owner_assignments(&self.db).await
    }

    async fn quota_limits(&self, tenant: &str) -> Result<Option<QuotaLimits>, RepoError> {
        tenants::quota_limits(&self.db, tenant).await
    }

    async fn tenants_with_limits(&self) -> Result<Vec<String>, RepoError> {
        tenants::tenants_with_limits(&self.db).await
    }

    async fn set_quota_limits(
        &self,
        tenant: &str,
        limits: Option<&QuotaLimits>,
    ) -> Result<(), RepoError> {
        let _gate = self.write_gate().await;
        tenants::set_quota_limits(&self.db, tenant, limits).await
    }

    async fn record_decisions(&self, records: &[DecisionRecord]) -> Result<(), RepoError> {
        let _gate = self.write_gate().await;
        decisions::record(self, records).await
    }

    async fn list_decisions(
        &self,
        filter: &DecisionFilter,
    ) -> Result<Vec<DecisionRecord>, RepoError> {
        decisions::list(&self.db, filter).await
    }

    async fn purge_decisions(&self, before: DateTime<Utc>, batch: u64) -> Result<u64, RepoError> {
        let _gate = self.write_gate().await;
        decisions::purge(&self.db, before, batch).await
    }
}

#[async_trait]
impl PlacementStore for SeaRepository {
    async fn placement(&self, instance: Uuid) -> Result<Option<Placement>, RepoError> {
        placements::placement(&self.db, instance).await
    }

    async fn placements_on_host(&self, host: &str) -> Result<Vec<Placement>, RepoError> {
        placements::on_host(&self.db, host).await
    }

    async fn all_placements(&self) -> Result<Vec<Placement>, RepoError> {
        placements::all(&self.db).await
    }

    async fn record_placements(&self, list: &[Placement]) -> Result<(), RepoError> {
        if list.is_empty() {
            return Ok(());
        }
        let _gate = self.write_gate().await;
        placements::record(&self.db, list, true).await
    }

    async fn record_new_placements(&self, list: &[Placement]) -> Result<(), RepoError> {
        if list.is_empty() {
            return Ok(());
        }
        let _gate = self.write_gate().await;
        placements::record(&self.db, list, false).await
    }

    async fn forget_placements(&self, host: &str, instances: &[Uuid]) -> Result<(), RepoError> {
        if instances.is_empty() {
            return Ok(());
        }
        let _gate = self.write_gate().await;
        placements::forget(&self.db, host, instances).await
    }
}

#[async_trait]
impl EventLog for SeaRepository {
    async fn append_events(&self, list: &[NewEvent]) -> Result<(), RepoError> {
        events::append(self, list).await
    }

    async fn events_after(
        &self,
        after: i64,
        filter: &EventFilter,
        limit: u64,
    ) -> Result<Vec<Event>, RepoError> {
        events::after(&self.db, after, filter, limit).await
    }

    async fn last_event_seq(&self) -> Result<i64, RepoError> {
        events::last_seq(&self.db).await
    }

    async fn sequence_events(&self, batch: u64) -> Result<i64, RepoError> {
        events::sequence(self, batch).await
    }

    async fn purge_events(&self, before: DateTime<Utc>, batch: u64) -> Result<u64, RepoError> {
        events::purge(self, before, batch).await
    }
}

#[async_trait]
impl EventFeedSource for SeaRepository {
    async fn event_feed(&self) -> Result<Option<Box<dyn EventSeqFeed>>, RepoError> {
        match self.backend {
            Backend::Postgres => Ok(Some(Box::new(
                crate::notify::PgEventFeed::listen(&self.db).await?,
            ))),
            Backend::Sqlite => Ok(None),
        }
    }
}
