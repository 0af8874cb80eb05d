//! Persistence of states, operations, quota limits, instance owners and policy decisions.
//! The sea-orm implementation (SQLite and PostgreSQL) is `snapgate-store`.
//!
//! Every method that changes a state together with its operation does so in one transaction,
//! so a crash never leaves one without the other.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::policy::Decision;
use super::quota::QuotaLimits;
use crate::events::NewEvent;
use crate::{Operation, OperationKind, Progress, State, StateStatus};

/// What recording a cancel request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRequest {
    /// The request stands on an unfinished save (recorded now, or by an earlier request).
    Recorded,
    /// The operation has ended: too late to cancel.
    Finished,
    /// The operation cannot be cancelled (not a save).
    NotCancellable,
}

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("a state named {0:?} already exists for this instance")]
    DuplicateName(String),
    /// Another state-changing operation is running on the instance.
    #[error("instance is busy with operation {0}")]
    InstanceBusy(Uuid),
    /// The state is not in the status the change needs.
    #[error("state is {0}")]
    WrongStatus(StateStatus),
    #[error("not found")]
    NotFound,
    /// The request's claim on its idempotency key was taken over (it ran past the claim's
    /// lease, or past the key's expiry): its answer is not stored and its work is undone.
    #[error("the idempotency key is held by another request")]
    IdempotencyKeyTaken,
    /// A write about an operation made under a lease epoch another gateway has since
    /// replaced (it took the operation over), or about an operation that has ended: nothing
    /// was written, and the writer no longer holds the operation.
    #[error("operation {0} is held under a newer lease, or has ended")]
    Fenced(Uuid),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Other(String),
}

/// One page of a listing, newest first.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<State>,
    /// True when more items follow the last one.
    pub more: bool,
}

/// What a tenant keeps, counted from the database (the source of truth for quota usage).
/// Kept states are those `available`, `applying` or `deleting`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantTotals {
    pub tenant: String,
    pub states: i64,
    pub bytes: i64,
}

/// A save that succeeded, as the saves-per-hour window counts it: the operation that made it
/// and when it started (when its reservation entered the window).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentSave {
    pub tenant: String,
    pub operation: Uuid,
    pub at: DateTime<Utc>,
}

/// A recorded policy decision with its request context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionRecord {
    pub id: Uuid,
    pub time: DateTime<Utc>,
    pub tenant: String,
    pub instance_uuid: Uuid,
    pub operation: OperationKind,
    pub dry_run: bool,
    #[serde(flatten)]
    pub decision: Decision,
}

/// Filter for decision listings; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    pub tenant: Option<String>,
    pub plugin: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: u64,
}

/// A request's hold on an idempotency key of its tenant while it runs. The answer is written
/// only while the row still carries `token`, so a request whose claim was taken over (after
/// `stale_after`, or after the key expired) can never store a second answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub tenant: String,
    pub key: String,
    /// Hex SHA-256 of the request's canonical form.
    pub fingerprint: String,
    pub token: Uuid,
    pub claimed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What holds a key that could not be claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub fingerprint: String,
    /// The stored answer; `None` while the first request is still being processed.
    pub answer: Option<String>,
    pub claimed_at: DateTime<Utc>,
}

/// The outcome of [`Repository::claim_idempotency_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key is this request's: no row held it, or the row's answer had expired, or its claim
    /// was older than the given cutoff (its request died before accepting anything).
    Claimed,
    /// Another request holds the key, or has answered it.
    Held(IdempotencyRecord),
}

/// The answer stored with the operation it accepted, in that operation's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedAnswer {
    pub claim: IdempotencyClaim,
    /// The answer (JSON, the service's own encoding).
    pub answer: String,
    pub operation: Uuid,
    /// Counted from when the answer is stored.
    pub expires_at: DateTime<Utc>,
}

/// What the shared feed of operation ends delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationEnd {
    /// This operation ended (on any gateway sharing the database).
    Ended(Uuid),
    /// The feed was interrupted and is back: announcements may have been lost meanwhile, so
    /// anything awaited may have ended.
    Gap,
}

/// Announcements of operation ends by every gateway sharing the database (PostgreSQL
/// `LISTEN`). One feed serves every waiter of a gateway.
#[async_trait]
pub trait OperationEndFeed: Send + 'static {
    /// The next announcement. An error means the feed is broken; the caller opens a new one.
    async fn next(&mut self) -> Result<OperationEnd, RepoError>;
}

#[async_trait]
pub trait Repository: Send + Sync + 'static {
    /// Health check.
    async fn ping(&self) -> Result<(), RepoError>;

    // ---- states and operations ---------------------------------------------------------

    /// Records a new state (status `saving`) and its save operation, and takes the instance's
    /// operation lock. Fails with `DuplicateName` or `InstanceBusy`.
    async fn begin_save(&self, state: &State, op: &Operation) -> Result<(), RepoError> {
        self.begin_keyed_save(state, op, None).await
    }

    /// [`Repository::begin_save`], storing `answer` under its idempotency key in the same
    /// transaction: both commit or neither. Fails with `IdempotencyKeyTaken` when the claim no
    /// longer holds the key.
    async fn begin_keyed_save(
        &self,
        state: &State,
        op: &Operation,
        answer: Option<&KeyedAnswer>,
    ) -> Result<(), RepoError>;

    /// Records an apply or delete operation, moves the state from `from` (normally `available`)
    /// to `to` (`applying`/`deleting`) and takes the instance's lock.
    async fn begin_state_operation(
        &self,
        op: &Operation,
        from: &[StateStatus],
        to: StateStatus,
    ) -> Result<(), RepoError> {
        self.begin_keyed_state_operation(op, from, to, None).await
    }

    /// [`Repository::begin_state_operation`] with the answer stored as in
    /// [`Repository::begin_keyed_save`].
    async fn begin_keyed_state_operation(
        &self,
        op: &Operation,
        from: &[StateStatus],
        to: StateStatus,
        answer: Option<&KeyedAnswer>,
    ) -> Result<(), RepoError>;

    // ---- idempotency keys ----------------------------------------------------------------

    /// Claims `claim.key` in `claim.tenant` for the request: a new row, or a row whose answer
    /// expired, or a claim (no answer) made before `stale_before` — taken over. Otherwise the
    /// row as it is.
    async fn claim_idempotency_key(
        &self,
        claim: &IdempotencyClaim,
        stale_before: DateTime<Utc>,
    ) -> Result<KeyClaim, RepoError>;

    /// Drops the claim (a request that accepted nothing), if it still holds the key unanswered.
    async fn release_idempotency_key(&self, claim: &IdempotencyClaim) -> Result<(), RepoError>;

    /// Deletes at most `batch` keys expired at `now`, soonest expired first; returns how many.
    async fn purge_idempotency_keys(
        &self,
        now: DateTime<Utc>,
        batch: u64,
    ) -> Result<u64, RepoError>;

    /// Marks an operation running (status, `started_at` and `updated_at` = `at`), if it is
    /// still held at `epoch`. `Fenced` when another gateway holds it now or it has ended;
    /// marking it running again under the same lease changes nothing.
    async fn mark_running(&self, op: Uuid, epoch: i64, at: DateTime<Utc>) -> Result<(), RepoError>;

    /// Heartbeat of a running operation held at `epoch`: sets only `updated_at` = `at`, so
    /// other gateways can tell live work from the work of a dead gateway (see
    /// `take_over_operation`). `Fenced` when another gateway holds it now or it has ended.
    async fn touch_operation(
        &self,
        op: Uuid,
        epoch: i64,
        at: DateTime<Utc>,
    ) -> Result<(), RepoError>;

    /// Takes over an unfinished operation whose heartbeat stopped: in one conditional update,
    /// only while it is still held at `epoch` and was last touched at or before
    /// `stale_before`, raises its epoch by one, names `owner` its holder and touches it
    /// (`updated_at` = `at`). Returns the operation as now held. `Fenced` when it is not
    /// stale any more, another gateway took it first, or it has ended.
    async fn take_over_operation(
        &self,
        op: Uuid,
        epoch: i64,
        stale_before: DateTime<Utc>,
        owner: &str,
        at: DateTime<Utc>,
    ) -> Result<Operation, RepoError>;

    /// Writes a progress sample of a running operation held at `epoch`. `Fenced` when another
    /// gateway holds it now or it has ended (a late sample never lands on an ended operation).
    async fn record_progress(
        &self,
        op: Uuid,
        epoch: i64,
        progress: &Progress,
    ) -> Result<(), RepoError>;

    /// Records a client's request to cancel a save (`cancel_requested_at` = `at`, kept from the
    /// first request), only while the save is unfinished: one conditional write, whichever
    /// gateway received the call.
    async fn request_cancel(&self, op: Uuid, at: DateTime<Utc>)
        -> Result<CancelRequest, RepoError>;

    /// When a client asked to cancel the operation, if one did.
    async fn cancel_requested(&self, op: Uuid) -> Result<Option<DateTime<Utc>>, RepoError>;

    /// Ends an operation held at `op.lease_epoch`: stores it as given (status, error, times),
    /// writes the state as given (or deletes the state row when `state` is `None`), and frees
    /// the instance's lock, in one transaction. `Fenced` (and nothing written) when another
    /// gateway holds the operation now or ended it; a repeat under the same lease after the end
    /// changes nothing and succeeds.
    async fn finish_operation(
        &self,
        op: &Operation,
        state: Option<&State>,
    ) -> Result<(), RepoError> {
        self.finish_operation_logged(op, state, &[]).await
    }

    /// [`Repository::finish_operation`] with the end's events (`state.saved`, `state.failed`
    /// …) appended in the same transaction, as plain inserts: the change and its events commit
    /// together or not at all (a repeat or a fenced end appends nothing).
    async fn finish_operation_logged(
        &self,
        op: &Operation,
        state: Option<&State>,
        events: &[NewEvent],
    ) -> Result<(), RepoError>;

    async fn get_state(&self, uuid: Uuid) -> Result<Option<State>, RepoError>;

    /// States of an instance, newest first, starting after `marker` (a state uuid).
    async fn list_states(
        &self,
        instance: Uuid,
        limit: u64,
        marker: Option<Uuid>,
    ) -> Result<ListPage, RepoError>;

    /// Number of states an instance keeps (any status).
    async fn count_states(&self, instance: Uuid) -> Result<u64, RepoError>;

    async fn get_operation(&self, uuid: Uuid) -> Result<Option<Operation>, RepoError>;

    /// Operations not yet finished (pending or running), oldest first, each with its lease.
    async fn unfinished_operations(&self) -> Result<Vec<Operation>, RepoError>;

    /// Deletes finished operations that ended before `before`; returns how many.
    async fn purge_operations(&self, before: DateTime<Utc>) -> Result<u64, RepoError>;

    /// Which of `ids` have finished (one query for all of them: the shared check behind
    /// every waiter of a gateway, never a query per waiter).
    async fn finished_operations(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, RepoError>;

    /// A feed of the operation ends every gateway announces, when the database has one
    /// (PostgreSQL `LISTEN/NOTIFY`; `finish_operation` announces in its transaction).
    /// `None` where it has none (SQLite: one process, or a few on one host, poll
    /// [`Repository::finished_operations`] once for all their waiters).
    async fn operation_end_feed(&self) -> Result<Option<Box<dyn OperationEndFeed>>, RepoError>;

    /// Kept states and bytes per tenant.
    async fn tenant_totals(&self) -> Result<Vec<TenantTotals>, RepoError>;

    /// Save operations that succeeded and started at or after `since`, oldest first: the
    /// committed part of every tenant's saves-per-hour window.
    async fn saves_since(&self, since: DateTime<Utc>) -> Result<Vec<RecentSave>, RepoError>;

    /// States recorded for an instance on a host (for the reconciler's orphan search).
    async fn states_of_instance(&self, instance: Uuid) -> Result<Vec<State>, RepoError>;

    // ---- tenants ------------------------------------------------------------------------

    async fn instance_owner(&self, instance: Uuid) -> Result<Option<String>, RepoError>;
    /// Every owner an operator assigned (`instance_owners`), by instance uuid.
    async fn owner_assignments(&self) -> Result<Vec<(Uuid, String)>, RepoError>;
    /// Sets (`Some`) or removes (`None`) the owner assigned to an instance and, in the same
    /// transaction, gives every state of the instance to `states_to` when given (states follow
    /// their instance, so no tenant keeps usage it cannot see). Refused with `InstanceBusy`
    /// while an operation holds the instance. Returns, per former tenant, the kept states and
    /// bytes that moved (the quota usage to move with them).
    async fn set_instance_owner(
        &self,
        instance: Uuid,
        owner: Option<&str>,
        states_to: Option<&str>,
    ) -> Result<Vec<TenantTotals>, RepoError>;

    async fn quota_limits(&self, tenant: &str) -> Result<Option<QuotaLimits>, RepoError>;
    /// The tenants with limits of their own (`quota_limits` rows), by id.
    async fn tenants_with_limits(&self) -> Result<Vec<String>, RepoError>;
    async fn set_quota_limits(
        &self,
        tenant: &str,
        limits: Option<&QuotaLimits>,
    ) -> Result<(), RepoError>;

    // ---- policy decisions ----------------------------------------------------------------

    async fn record_decisions(&self, records: &[DecisionRecord]) -> Result<(), RepoError>;
    async fn list_decisions(
        &self,
        filter: &DecisionFilter,
    ) -> Result<Vec<DecisionRecord>, RepoError>;

    /// Deletes at most `batch` decisions recorded before `before`, oldest first; returns how
    /// many. Callers repeat it while it returns `batch`, so no statement holds a long lock.
    async fn purge_decisions(&self, before: DateTime<Utc>, batch: u64) -> Result<u64, RepoError>;
}
