//! Ending an operation, in one place. The runner ends the work it ran; the reconciler ends the
//! work it took over from a gateway whose heartbeat stopped. Both come here, holding the
//! operation at some lease epoch (`Operation::lease_epoch`):
//!
//! 1. the records are made from the outcome (one rule for both: what the state becomes, and
//!    whether it counted against quota before the operation),
//! 2. the end is persisted only while the ender still holds the lease
//!    (`Repository::finish_operation`, conditional on the epoch),
//! 3. and only the ender whose write won settles the quota, counts the end and wakes waiters:
//!    units are settled exactly once, whoever ends the operation.
//!
//! An ender that finds its lease taken over (`Fenced`: it was paused, or cut off from the
//! database, longer than the stale interval) writes and settles nothing. Whoever took a save
//! over always rolls it back (its state ends `error`, code `interrupted`), so a snapshot the
//! late save made has no record that could want it: the late gateway deletes it.

use std::time::Instant;

use chrono::Utc;

use super::Service;
use crate::ports::{ComputeError, RepoError, SavedSnapshot};
use crate::{ErrorInfo, Operation, OperationKind, OperationStatus, State, StateStatus};

/// How the work of an operation came out, as its ender saw it.
pub(super) enum Outcome {
    /// A save succeeded: what libvirt made.
    Saved(SavedSnapshot),
    /// An apply or delete did its work (or, for a delete, found nothing left to delete).
    Done,
    /// The work failed or was cut off: the reason clients read.
    Failed(ErrorInfo),
    /// A client cancelled the save (`DELETE /v1/operations/{id}`): its state row goes, its
    /// reservation is released, what libvirt left was removed by the runner.
    Cancelled,
}

/// The code a cancelled save's operation carries.
pub(crate) const CANCELLED: &str = "cancelled";

/// Who ends the operation.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ender {
    /// The gateway that ran it, since `started`.
    Runner { started: Instant },
    /// A gateway that took it over after its heartbeat stopped.
    Takeover,
}

/// What ending came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// This end is the record; the quota is settled and waiters are woken.
    Recorded,
    /// Another gateway holds the operation now, or ended it: nothing was written or settled.
    Fenced,
}

/// Which write a lease refused, as `snapgate_operations_fenced_total{write}` counts it.
#[derive(Debug, Clone, Copy)]
pub(super) enum FencedWrite {
    MarkRunning,
    Heartbeat,
    Finish,
}

impl FencedWrite {
    fn as_str(self) -> &'static str {
        match self {
            FencedWrite::MarkRunning => "mark_running",
            FencedWrite::Heartbeat => "heartbeat",
            FencedWrite::Finish => "finish",
        }
    }
}

/// Counts and logs a write the operation's lease refused.
pub(super) fn fenced(op: &Operation, write: FencedWrite) {
    tracing::warn!(
        operation = %op.uuid,
        epoch = op.lease_epoch,
        write = write.as_str(),
        "another gateway took this operation over; this gateway's write was refused"
    );
    metrics::counter!("snapgate_operations_fenced_total", "kind" => op.kind.as_str(), "write" => write.as_str())
        .increment(1);
}

/// Whether the state counted against its tenant's quota when the operation began: a kept
/// state, i.e. one whose save had succeeded. A save's own state did not count yet; a state whose
/// save failed (it carries the error) never does.
fn counted_before(op: &Operation, state: &State) -> bool {
    op.kind != OperationKind::Save && state.error.is_none()
}

impl Service {
    /// Ends `op` under the lease it carries. `state` is the state as read before the work
    /// (`None` when its row is gone). An error means the database could not be written: the
    /// operation stays unfinished and a reconciler ends it once its heartbeat is stale.
    pub(super) async fn end_operation(
        &self,
        mut op: Operation,
        state: Option<State>,
        outcome: Outcome,
        ender: Ender,
    ) -> Result<Ended, RepoError> {
        let counted = state.as_ref().is_some_and(|s| counted_before(&op, s));
        let counted_bytes = state.as_ref().and_then(|s| s.size_bytes).unwrap_or(0);
        let now = Utc::now();
        op.finished_at = Some(now);
        op.updated_at = now;
        let late_snapshot = match &outcome {
            Outcome::Saved(_) => state.as_ref().map(State::snapshot_name),
            _ => None,
        };
        let before = state.clone();
        let cancelled = matches!(outcome, Outcome::Cancelled);
        let record = end_records(&mut op, state, outcome, counted, now);
        let events: Vec<_> = super::event_log::end_event(&op, before.as_ref(), record.as_ref())
            .into_iter()
            .collect();

        match self
            .repo
            .finish_operation_logged(&op, record.as_ref(), &events)
            .await
        {
            Ok(()) => {}
            Err(RepoError::Fenced(_)) => {
                if let Some(name) = late_snapshot {
                    self.discard_late_snapshot(&op, &name).await;
                }
                // Counted once the late gateway is done with the operation (its snapshot
                // discarded), so whoever reads the counter sees the cleanup finished.
                fenced(&op, FencedWrite::Finish);
                return Ok(Ended::Fenced);
            }
            Err(e) => return Err(e),
        }
        if !events.is_empty() {
            self.bus.appended();
        }
        self.settle_quota(&op, record.as_ref(), counted, counted_bytes)
            .await;
        super::audit::ended(&op);
        if cancelled {
            metrics::counter!("snapgate_operation_cancels_total", "outcome" => "cancelled")
                .increment(1);
        }
        match ender {
            Ender::Runner { started } => {
                let result = if op.status == OperationStatus::Succeeded {
                    "succeeded"
                } else if cancelled {
                    "cancelled"
                } else {
                    "failed"
                };
                metrics::counter!("snapgate_operations_total", "kind" => op.kind.as_str(), "result" => result).increment(1);
                metrics::histogram!("snapgate_operation_duration_seconds", "kind" => op.kind.as_str(), "result" => result)
                    .record(started.elapsed().as_secs_f64());
                tracing::info!(status = %op.status, elapsed_ms = started.elapsed().as_millis() as u64, "operation ended");
            }
            Ender::Takeover => {
                metrics::counter!("snapgate_operations_reconciled_total", "kind" => op.kind.as_str())
                    .increment(1);
                tracing::info!(operation = %op.uuid, status = %op.status, epoch = op.lease_epoch, "ended an operation taken over");
            }
        }
        self.waits.announce(op.uuid);
        Ok(Ended::Recorded)
    }

    /// A save this gateway finished after another gateway had taken it over (and rolled it
    /// back, marking its state failed): the snapshot libvirt made has no live record. Deleting
    /// it is this gateway's last act on the operation; it touches no record.
    async fn discard_late_snapshot(&self, op: &Operation, name: &str) {
        match self.compute.delete(&op.host, op.instance_uuid, name).await {
            Ok(()) => {
                tracing::warn!(operation = %op.uuid, snapshot = name, "deleted the snapshot of a save taken over by another gateway");
            }
            Err(ComputeError::SnapshotNotFound(_)) => {
                tracing::info!(operation = %op.uuid, snapshot = name, "the snapshot of a save taken over by another gateway is gone already");
            }
            Err(e) => {
                tracing::error!(operation = %op.uuid, host = %op.host, instance = %op.instance_uuid, snapshot = name, error = %e,
                    "could not delete the snapshot of a save taken over by another gateway; it has no record");
            }
        }
    }

    /// Moves the operation's quota units where they belong once it has ended (called only by
    /// the ender whose end was recorded).
    async fn settle_quota(
        &self,
        op: &Operation,
        state: Option<&State>,
        counted: bool,
        counted_bytes: i64,
    ) {
        let tenant = &op.tenant_id;
        let result = match (op.kind, op.status, state) {
            (OperationKind::Save, OperationStatus::Succeeded, Some(state)) => {
                self.quota.commit(tenant, op.uuid, state.size_bytes).await
            }
            (OperationKind::Delete, OperationStatus::Succeeded, _) => {
                let (states, bytes) = if counted { (1, counted_bytes) } else { (0, 0) };
                let freed = self.quota.free(tenant, op.uuid, states, bytes).await;
                let released = self.quota.release(tenant, op.uuid).await;
                freed.and(released)
            }
            _ => self.quota.release(tenant, op.uuid).await,
        };
        if let Err(e) = result {
            // The database stays right; the quota reconciler rebuilds usage from it.
            tracing::warn!(error = %e, "could not settle quota; it will be rebuilt from the database");
        }
    }
}

/// Sets the operation's status and error from the outcome and returns the state as it is to
/// be written: `None` when the state row goes (a delete's end) or was gone already.
fn end_records(
    op: &mut Operation,
    state: Option<State>,
    outcome: Outcome,
    counted: bool,
    now: chrono::DateTime<Utc>,
) -> Option<State> {
    match &outcome {
        Outcome::Saved(_) | Outcome::Done => op.status = OperationStatus::Succeeded,
        Outcome::Failed(info) => {
            op.status = OperationStatus::Failed;
            op.error = Some(info.clone());
        }
        Outcome::Cancelled => {
            op.status = OperationStatus::Failed;
            op.error = Some(ErrorInfo::new(
                CANCELLED,
                "the save was cancelled by its client",
            ));
        }
    }
    op.refresh_may_cancel();
    let mut state = state?;
    state.updated_at = now;
    match outcome {
        Outcome::Saved(saved) => {
            state.status = StateStatus::Available;
            state.size_bytes = Some(saved.size_bytes);
            state.memory_bytes = Some(saved.memory_bytes);
            state.disk_formats = saved.disk_formats;
            state.cpu = Some(saved.cpu);
            state.cpu_xml = saved.cpu_xml.or(state.cpu_xml.take());
            state.snapshot_kind = saved.kind;
            state.snapshot_xml = saved.snapshot_xml;
            if let Some(parent) = saved
                .parent
                .as_deref()
                .and_then(|p| uuid::Uuid::parse_str(p).ok())
            {
                state.parent = Some(parent);
            }
        }
        Outcome::Done if op.kind == OperationKind::Delete => return None,
        // A cancelled save leaves no state: nothing was kept, nothing counts against quota.
        Outcome::Cancelled => return None,
        Outcome::Done => state.status = StateStatus::Available,
        // A failed save keeps its record, in error, so the user sees why; a failed apply or
        // delete leaves the state as it was (its snapshot is still there).
        Outcome::Failed(info) if op.kind == OperationKind::Save => {
            state.status = StateStatus::Error;
            state.error = Some(info);
        }
        Outcome::Failed(_) if counted => state.status = StateStatus::Available,
        Outcome::Failed(_) => state.status = StateStatus::Error,
    }
    Some(state)
}
