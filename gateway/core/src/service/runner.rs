//! Runs an accepted operation in the background: dispatch to the compute backend while a
//! heartbeat keeps the operation's lease, then end it (`ending.rs`: persist the end under the
//! lease, settle the quota). Every path ends the operation, so nothing stays `saving`.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tracing::Instrument;

use super::ending::{self, Ender, FencedWrite, Outcome};
use super::Service;
use crate::ports::{ComputeError, RepoError, SaveRequest};
use crate::{Operation, OperationKind, OperationStatus, State};

impl Service {
    pub(super) fn spawn_operation(self: &Arc<Self>, op: Operation, state: State) {
        let guard = self.tasks.enter();
        let service = self.clone();
        let span = tracing::info_span!("operation", operation_id = %op.uuid, kind = %op.kind,
            instance = %op.instance_uuid, state = %op.state_uuid, host = %op.host);
        tokio::spawn(
            async move {
                let _guard = guard;
                service.run_operation(op, state).await;
            }
            .instrument(span),
        );
    }

    async fn run_operation(self: Arc<Self>, mut op: Operation, state: State) {
        let started = Instant::now();
        // Operations are recorded as running already (see `new_operation`); only one that was
        // recorded pending (e.g. by an older gateway) is moved here.
        if op.status == OperationStatus::Pending {
            let now = Utc::now();
            match self.repo.mark_running(op.uuid, op.lease_epoch, now).await {
                Ok(()) => {}
                Err(RepoError::Fenced(_)) => {
                    // Another gateway took it over before the work began: it is theirs.
                    ending::fenced(&op, FencedWrite::MarkRunning);
                    return;
                }
                Err(e) => {
                    // The operation stays pending; the reconciler will end it.
                    tracing::error!(error = %e, "could not mark the operation running");
                    return;
                }
            }
            op.status = OperationStatus::Running;
            op.started_at = Some(now);
        }

        // No read of a cancel before the libvirt call: a client learns the operation's id
        // from the 202, which is sent after this task was spawned, so a read here almost never
        // found one, and it cost every save a database round trip. A cancel recorded since is
        // seen by the sampler (which aborts the job) or by the read after the call (which
        // discards what the call made).
        let heartbeat = self.spawn_heartbeat(&op);
        let sampler = self.spawn_sampler(&op);
        let result = self.dispatch(&op, &state).await;
        heartbeat.abort();
        let last_sample = sampler.and_then(|s| s.stop());

        // A cancel recorded before this read wins, whatever libvirt answered: its job was
        // aborted (the call failed), or the abort came too late for libvirt or never reached
        // it, and the snapshot it made is discarded. A cancel recorded after this read is too
        // late: the save succeeds (docs/API.md).
        let cancelled = self.cancel_requested(&op).await;
        let outcome = match result {
            _ if cancelled => {
                if let Err(e) = self
                    .compute
                    .discard_save(&op.host, op.instance_uuid, &state.snapshot_name())
                    .await
                {
                    tracing::error!(error = %e, host = %op.host, "could not remove what the cancelled save left on the host");
                }
                Outcome::Cancelled
            }
            Ok(Some(saved)) => {
                op.progress = super::progress::completed(last_sample);
                Outcome::Saved(saved)
            }
            Ok(None) => {
                op.progress = super::progress::completed(last_sample);
                Outcome::Done
            }
            Err(e) => {
                // The record (which clients read) gets the code's fixed message; the detail
                // goes to the log, in this operation's span (its operation id).
                tracing::warn!(error = %e, code = e.code(), "operation failed");
                op.progress = last_sample;
                Outcome::Failed(e.client_info())
            }
        };
        if let Err(e) = self
            .end_operation(op, Some(state), outcome, Ender::Runner { started })
            .await
        {
            // The record stays unfinished; once its heartbeat is stale a reconciler takes it
            // over and ends it from what libvirt shows.
            tracing::error!(error = %e, "could not record the end of the operation");
        }
    }

    /// The libvirt part of an operation.
    async fn dispatch(
        &self,
        op: &Operation,
        state: &State,
    ) -> Result<Option<crate::ports::SavedSnapshot>, ComputeError> {
        match op.kind {
            OperationKind::Save => {
                let req = SaveRequest {
                    instance: op.instance_uuid,
                    snapshot_name: state.snapshot_name(),
                    kind: state.snapshot_kind,
                };
                self.compute.save(&op.host, req).await.map(Some)
            }
            OperationKind::Apply => {
                let name = state.snapshot_name();
                match self.compute.apply(&op.host, op.instance_uuid, &name).await {
                    Err(ComputeError::SnapshotNotFound(_)) if self.redefine(op, state).await? => {
                        self.compute.apply(&op.host, op.instance_uuid, &name).await
                    }
                    other => other,
                }
                .map(|_| None)
            }
            OperationKind::Delete => {
                // On the instance's current host: after a move, that is where its snapshot
                // (defined again if need be) is deleted.
                let name = state.snapshot_name();
                let deleted = match self.compute.delete(&op.host, op.instance_uuid, &name).await {
                    Err(ComputeError::SnapshotNotFound(_)) if self.redefine(op, state).await? => {
                        self.compute.delete(&op.host, op.instance_uuid, &name).await
                    }
                    other => other,
                };
                match deleted {
                    // Nothing to delete (a save that failed early, or a retry): the goal is reached.
                    Ok(()) | Err(ComputeError::SnapshotNotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Defines the state's snapshot again on the operation's host, which lacks it (the instance
    /// moved, or its domain was defined anew). `false` when there is nothing to define it from
    /// (a state saved before snapshot XML was kept, or a save that never finished).
    async fn redefine(&self, op: &Operation, state: &State) -> Result<bool, ComputeError> {
        let Some(xml) = state.snapshot_xml.as_deref() else {
            return Ok(false);
        };
        tracing::info!(saved_on = %state.host, host = %op.host, "the host lacks the snapshot; defining it from the saved XML");
        self.compute
            .redefine_snapshot(&op.host, op.instance_uuid, xml)
            .await?;
        Ok(true)
    }

    /// Keeps the operation and its reservation alive while its holder works on it, so other
    /// gateways do not take it for the work of a dead one. Stops by itself once the lease is
    /// taken over: the operation is another gateway's then, and so is its reservation.
    pub(super) fn spawn_heartbeat(&self, op: &Operation) -> tokio::task::JoinHandle<()> {
        let (repo, quota, lease) = (
            self.repo.clone(),
            self.quota.clone(),
            self.settings.quota_lease,
        );
        let op = op.clone();
        let every = (self.settings.stale_after / 4).max(std::time::Duration::from_millis(250));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match repo
                    .touch_operation(op.uuid, op.lease_epoch, Utc::now())
                    .await
                {
                    Ok(()) => {}
                    Err(RepoError::Fenced(_)) => {
                        ending::fenced(&op, FencedWrite::Heartbeat);
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "operation heartbeat failed"),
                }
                let _ = quota.renew(&op.tenant_id, op.uuid, lease).await;
            }
        })
    }
}
