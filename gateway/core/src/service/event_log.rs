//! What the service puts in the event log (issue 12, point 4) and how it is read back.
//!
//! - **State changes** (`state.saved|applied|deleted|failed|expired`) are written by
//!   `Repository::finish_operation_logged` in the operation end's own transaction, and
//!   `schedule.run|skipped` in the transaction that records the run: the outbox guarantee, a
//!   change and its event commit together or not at all.
//! - **Refusals** (`quota.exceeded`, `policy.denied`) changed nothing, so nothing commits with
//!   them: they go through [`Refusals`], a bounded in-memory batcher flushed as one multi-row
//!   insert (a burst of refusals costs a few inserts, not one each on the request path), and
//!   flushed at shutdown. A refusal event can be lost if the gateway dies before a flush (or
//!   when the batcher is full); a state-change event never is.
//! - **Reading**: [`EventStream`] reads the log from the database (so every gateway serves the
//!   same stream), woken by the [`EventBus`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::{EventBus, Service, READ_FALLBACK_EVERY};
use crate::auth::{Caller, Role};
use crate::events::{Event, EventFilter, EventKind, NewEvent};
use crate::ports::{EventLog, QuotaError};
use crate::{Operation, OperationKind, OperationStatus, ServiceError, State};

/// Refusals waiting for a flush; more are dropped (and counted) rather than slow a request.
const REFUSAL_QUEUE: usize = 4096;
/// Rows per flush.
const REFUSAL_FLUSH_ROWS: usize = 500;
/// How long shutdown waits for the refusals queued to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(5);
/// Events read per database query of a stream.
pub const STREAM_PAGE: u64 = 200;
/// Rows the maintenance loop purges per statement, and statements per pass.
const PURGE_BATCH: u64 = 1000;
const PURGE_ROUNDS: usize = 20;

enum Refusal {
    Event(Box<NewEvent>),
    Flush(oneshot::Sender<()>),
}

/// A cloneable handle that queues events for the batcher (the progress sampler's).
#[derive(Clone)]
pub(super) struct BatchedEvents(mpsc::Sender<Refusal>);

impl BatchedEvents {
    /// Queues `event` without waiting; a full queue drops it (counted).
    pub fn push(&self, event: NewEvent) {
        Self::push_to(&self.0, event);
    }

    fn push_to(tx: &mpsc::Sender<Refusal>, event: NewEvent) {
        if tx.try_send(Refusal::Event(Box::new(event))).is_err() {
            metrics::counter!("snapgate_events_dropped_total").increment(1);
        }
    }
}

/// The refusal batcher's sending side. It also carries `operation.progress`: a sample is
/// already written on its operation, and a lost sample event is followed by the next one or by
/// the operation's end, so it needs no transaction either.
pub(super) struct Refusals {
    tx: mpsc::Sender<Refusal>,
    rx: Mutex<Option<mpsc::Receiver<Refusal>>>,
}

impl Refusals {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(REFUSAL_QUEUE);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    pub fn handle(&self) -> BatchedEvents {
        BatchedEvents(self.tx.clone())
    }

    /// Queues `event` without waiting; a full queue drops it (counted).
    pub fn push(&self, event: NewEvent) {
        BatchedEvents::push_to(&self.tx, event);
    }

    /// The flusher: one insert per batch of what is queued; runs until the handle is aborted.
    fn spawn(&self, log: Arc<dyn EventLog>, bus: Arc<EventBus>) -> tokio::task::JoinHandle<()> {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        tokio::spawn(async move {
            let Some(mut rx) = rx else { return };
            let mut batch = Vec::new();
            let mut acks = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some(item) = next.take() {
                    match item {
                        Refusal::Event(e) => batch.push(*e),
                        Refusal::Flush(ack) => acks.push(ack),
                    }
                    if batch.len() < REFUSAL_FLUSH_ROWS {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    match log.append_events(&batch).await {
                        Ok(()) => bus.appended(),
                        Err(e) => {
                            metrics::counter!("snapgate_events_dropped_total")
                                .increment(batch.len() as u64);
                            tracing::warn!(error = %e, lost = batch.len(), "could not append refusal events");
                        }
                    }
                    batch.clear();
                }
                for ack in acks.drain(..) {
                    let _ = ack.send(());
                }
            }
        })
    }

    /// Waits until everything queued before this call is written (bounded: shutdown must not
    /// hang on a database that does not answer, or on a flusher that was never started).
    async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        let flushed = async {
            if self.tx.send(Refusal::Flush(ack)).await.is_ok() {
                let _ = done.await;
            }
        };
        if tokio::time::timeout(FLUSH_WAIT, flushed).await.is_err() {
            tracing::warn!("refusal events not flushed in time; some may be lost");
        }
    }
}

/// Open streams per tenant on this gateway.
#[derive(Default)]
pub(super) struct StreamSlots {
    per_tenant: Arc<Mutex<HashMap<String, usize>>>,
}

/// An open stream's place in its tenant's count; dropped when the stream ends.
pub struct StreamSlot {
    per_tenant: Arc<Mutex<HashMap<String, usize>>>,
    tenant: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut map = self.per_tenant.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.tenant);
            }
        }
        metrics::gauge!("snapgate_event_streams_open").decrement(1.0);
    }
}

impl StreamSlots {
    fn enter(&self, tenant: &str, max: usize) -> Result<StreamSlot, ServiceError> {
        let mut map = self.per_tenant.lock().unwrap_or_else(|e| e.into_inner());
        let held = map.get(tenant).copied().unwrap_or(0);
        if held >= max {
            metrics::counter!("snapgate_event_streams_refused_total").increment(1);
            return Err(ServiceError::Throttled {
                code: "too_many_event_streams",
                message: format!(
                    "this tenant already holds {held} event streams open on this gateway (the limit)"
                ),
                retry_after_secs: 5,
            });
        }
        *map.entry(tenant.to_owned()).or_default() += 1;
        metrics::gauge!("snapgate_event_streams_open").increment(1.0);
        Ok(StreamSlot {
            per_tenant: self.per_tenant.clone(),
            tenant: tenant.to_owned(),
        })
    }
}

/// What a client asks of `GET /v1/events`.
#[derive(Debug, Clone, Default)]
pub struct EventStreamRequest {
    /// Resume after this `seq` (`Last-Event-ID` or `?after=`); `None`: live only.
    pub after: Option<i64>,
    pub kinds: Vec<EventKind>,
    pub instance: Option<Uuid>,
    /// Operators only; a tenant's caller always reads its own tenant (this is ignored).
    pub tenant: Option<String>,
}

/// An open event stream: reads the log after its position, woken by the bus.
pub struct EventStream {
    log: Arc<dyn EventLog>,
    filter: EventFilter,
    /// The last `seq` read (events not matching the filter move it too).
    position: i64,
    latest: watch::Receiver<i64>,
    closing: watch::Receiver<bool>,
    _slot: StreamSlot,
}

impl EventStream {
    pub fn position(&self) -> i64 {
        self.position
    }

    /// The next events after the position, waiting for some; `None` once the gateway is
    /// shutting down.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<Event>>, ServiceError> {
        loop {
            if *self.closing.borrow() {
                return Ok(None);
            }
            // Seen before reading, so an announcement during the read is not missed.
            self.latest.borrow_and_update();
            let events = self
                .log
                .events_after(self.position, &self.unfiltered_tenant(), STREAM_PAGE)
                .await?;
            if let Some(last) = events.last() {
                self.position = last.seq;
                let wanted: Vec<Event> = events
                    .into_iter()
                    .filter(|e| self.filter.matches(e))
                    .collect();
                if !wanted.is_empty() {
                    return Ok(Some(wanted));
                }
                continue;
            }
            tokio::select! {
                _ = self.latest.changed() => {}
                _ = self.closing.changed() => {}
                _ = tokio::time::sleep(READ_FALLBACK_EVERY) => {}
            }
        }
    }

    /// The query's filter is the tenant only: kinds and instance are filtered here, so the
    /// position advances over events the client does not want (no re-reading them).
    fn unfiltered_tenant(&self) -> EventFilter {
        EventFilter {
            tenant: self.filter.tenant.clone(),
            ..EventFilter::default()
        }
    }
}

/// The `operation.progress` event of a sample just written on `op`.
pub(super) fn progress_event(op: &Operation, progress: &crate::Progress) -> NewEvent {
    NewEvent {
        instance_uuid: Some(op.instance_uuid),
        state_uuid: Some(op.state_uuid),
        operation_uuid: Some(op.uuid),
        occurred_at: progress.updated_at,
        ..NewEvent::new(
            EventKind::OperationProgress,
            op.tenant_id.clone(),
            json!({
                "operation": op.kind.as_str(),
                "phase": progress.phase,
                "bytes_processed": progress.bytes_processed,
                "bytes_total": progress.bytes_total,
                "percent": progress.percent,
            }),
        )
    }
}

/// The event of an operation's end, or none when the end is not a change worth one.
pub(super) fn end_event(
    op: &Operation,
    before: Option<&State>,
    after: Option<&State>,
) -> Option<NewEvent> {
    let state = after.or(before);
    let base = |kind: EventKind, data: serde_json::Value| NewEvent {
        instance_uuid: Some(op.instance_uuid),
        state_uuid: Some(op.state_uuid),
        operation_uuid: Some(op.uuid),
        occurred_at: op.finished_at.unwrap_or_else(chrono::Utc::now),
        ..NewEvent::new(kind, op.tenant_id.clone(), data)
    };
    let name = state.map(|s| s.name.clone());
    let error = op.error.as_ref();
    if op.status == OperationStatus::Failed && error.is_some_and(|e| e.code == "cancelled") {
        // Its client cancelled it (`DELETE /v1/operations/{id}`): the state was removed.
        return Some(base(
            EventKind::OperationCancelled,
            json!({
                "operation": op.kind.as_str(),
                "state_name": name,
                "host": op.host,
            }),
        ));
    }
    if op.status == OperationStatus::Failed {
        return Some(base(
            EventKind::StateFailed,
            json!({
                "operation": op.kind.as_str(),
                "state_name": name,
                "status": after.map(|s| s.status.as_str()),
                "host": op.host,
                "error_code": error.map(|e| e.code.clone()),
                "error_message": error.map(|e| e.message.clone()),
            }),
        ));
    }
    if op.status != OperationStatus::Succeeded {
        return None;
    }
    Some(match op.kind {
        OperationKind::Save => base(
            EventKind::StateSaved,
            json!({
                "state_name": name,
                "status": after.map(|s| s.status.as_str()),
                "size_bytes": after.and_then(|s| s.size_bytes),
                "memory_bytes": after.and_then(|s| s.memory_bytes),
                "snapshot_kind": after.map(|s| s.snapshot_kind.as_str()),
                "host": op.host,
                "schedule_id": after.and_then(|s| s.schedule_id),
                "expires_at": after.and_then(|s| s.expires_at),
            }),
        ),
        OperationKind::Apply => base(
            EventKind::StateApplied,
            json!({
                "state_name": name,
                "status": after.map(|s| s.status.as_str()),
                "host": op.host,
            }),
        ),
        OperationKind::Delete => {
            // A delete of a state already past its expiry when the delete began is that
            // state's expiry (the maintenance loop's, or a user's who got there first). Told
            // from the records, so it holds whichever gateway ends the operation.
            let expired = before
                .and_then(|s| s.expires_at)
                .is_some_and(|at| at <= op.created_at);
            let kind = if expired {
                EventKind::StateExpired
            } else {
                EventKind::StateDeleted
            };
            base(
                kind,
                json!({
                    "state_name": name,
                    "size_bytes": before.and_then(|s| s.size_bytes),
                    "host": op.host,
                    "expires_at": before.and_then(|s| s.expires_at),
                }),
            )
        }
    })
}

impl Service {
    /// The event bus: the sequencer and readers' wake-ups.
    pub fn event_bus(&self) -> &Arc<EventBus> {
        &self.bus
    }

    /// Starts the sequencer, its feed listener and the refusal batcher; runs until aborted.
    pub fn spawn_events(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let bus = self.bus.spawn();
        let refusals = self
            .refusals
            .spawn(self.bus.log().clone(), self.bus.clone());
        tokio::spawn(async move {
            // Aborting this task drops these handles, which would not stop the tasks: do so.
            let _guards = [bus, refusals].map(AbortOnDrop);
            std::future::pending::<()>().await;
        })
    }

    /// Shutdown: ends every open event stream and writes the refusals still queued.
    pub async fn close_events(&self) {
        let _ = self.closing.send(true);
        self.refusals.flush().await;
    }

    /// Writes the refusal events queued so far (tests and shutdown).
    pub async fn flush_events(&self) {
        self.refusals.flush().await;
    }

    /// Deletes events older than `events.retention` (oldest first, in batches).
    pub(super) async fn purge_events(&self) {
        let Ok(keep) = chrono::Duration::from_std(self.settings.event_retention) else {
            return;
        };
        let before = chrono::Utc::now() - keep;
        let mut purged = 0;
        for _ in 0..PURGE_ROUNDS {
            match self.bus.log().purge_events(before, PURGE_BATCH).await {
                Ok(n) => {
                    purged += n;
                    if n < PURGE_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not purge old events");
                    break;
                }
            }
        }
        if purged > 0 {
            metrics::counter!("snapgate_events_purged_total").increment(purged);
        }
    }

    /// A refusal on the request path (no state changed): queued for the batcher.
    pub(super) fn refused(&self, event: NewEvent) {
        self.refusals.push(event);
    }

    pub(super) fn quota_refused(
        &self,
        tenant: &str,
        instance: Uuid,
        kind: OperationKind,
        limits: &crate::ports::QuotaLimits,
        e: &QuotaError,
    ) {
        let data = match e {
            QuotaError::Exceeded {
                resource,
                limit,
                in_use,
                reserved,
                requested,
            } => json!({
                "operation": kind.as_str(),
                "dimension": resource.as_str(),
                "limit": limit,
                "in_use": in_use,
                "reserved": reserved,
                "requested": requested,
            }),
            QuotaError::RateLimited { retry_after_secs } => json!({
                "operation": kind.as_str(),
                "dimension": "saves_per_hour",
                "limit": limits.saves_per_hour,
                "retry_after_secs": retry_after_secs,
            }),
            QuotaError::Unavailable(_) => return,
        };
        self.refused(NewEvent {
            instance_uuid: Some(instance),
            ..NewEvent::new(EventKind::QuotaExceeded, tenant, data)
        });
    }

    /// Opens `GET /v1/events` for `caller`: members of a tenant read their tenant only (a
    /// `tenant` they send is ignored); operators read every tenant, or the one they name.
    pub async fn open_event_stream(
        &self,
        caller: &Caller,
        request: EventStreamRequest,
    ) -> Result<EventStream, ServiceError> {
        super::access::require(caller, Role::Reader)?;
        let tenant = if caller.is_operator() {
            if let Some(t) = &request.tenant {
                super::validate::tenant_id(t)?;
            }
            request.tenant
        } else {
            Some(caller.tenant.clone())
        };
        if let Some(after) = request.after {
            if after < 0 {
                return Err(ServiceError::bad_request(
                    "invalid_event_id",
                    "Last-Event-ID / after must be a non-negative event seq",
                ));
            }
        }
        let slot_tenant = tenant.clone().unwrap_or_else(|| caller.tenant.clone());
        let slot = self
            .streams
            .enter(&slot_tenant, self.settings.max_event_streams_per_tenant)?;
        let position = match request.after {
            Some(after) => after,
            None => self.bus.log().last_event_seq().await?,
        };
        Ok(EventStream {
            log: self.bus.log().clone(),
            filter: EventFilter {
                tenant,
                kinds: request.kinds,
                instance: request.instance,
            },
            position,
            latest: self.bus.subscribe(),
            closing: self.closing.subscribe(),
            _slot: slot,
        })
    }
}

/// The keep-alive period of SSE streams (a comment line).
pub const STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
