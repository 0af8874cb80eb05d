//! Runs an accepted operation in the background: dispatch to the compute backend, then persist
//! the result and settle the quota. Every path ends the operation, so nothing stays `saving`.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tracing::Instrument;

use super::Service;
use crate::ports::{ComputeError, SaveRequest};
use crate::{Operation, OperationKind, OperationStatus, State, StateStatus};

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

    async fn run_operation(self: Arc<Self>, mut op: Operation, mut state: State) {
        let started = Instant::now();
        // Operations are recorded as running already (see `new_operation`); only one that was
        // recorded pending (e.g. by an older gateway) is moved here.
        if op.status == OperationStatus::Pending {
            let now = Utc::now();
            if let Err(e) = self.repo.mark_running(op.uuid, now).await {
                // The operation stays pending; the reconciler will end it.
                tracing::error!(error = %e, "could not mark the operation running");
                return;
            }
            op.status = OperationStatus::Running;
            op.started_at = Some(now);
        }

        let heartbeat = self.spawn_heartbeat(&op);
        let result = self.dispatch(&op, &state).await;
        heartbeat.abort();

        let now = Utc::now();
        op.finished_at = Some(now);
        op.updated_at = now;
        state.updated_at = now;
        let kept_bytes = state.size_bytes.unwrap_or(0);
        // Only states whose save succeeded count against quota; a failed save carries its error.
        let was_kept = op.kind != OperationKind::Save && state.error.is_none();
        let outcome = match (&result, op.kind) {
            (Ok(Some(saved)), OperationKind::Save) => {
                state.status = StateStatus::Available;
                state.size_bytes = Some(saved.size_bytes);
                state.memory_bytes = Some(saved.memory_bytes);
                state.disk_formats = saved.disk_formats.clone();
                state.cpu = Some(saved.cpu.clone());
                state.cpu_xml = saved.cpu_xml.clone().or(state.cpu_xml.take());
                state.snapshot_kind = saved.kind;
                state.snapshot_xml = saved.snapshot_xml.clone();
                if let Some(parent) = saved
                    .parent
                    .as_deref()
                    .and_then(|p| uuid::Uuid::parse_str(p).ok())
                {
                    state.parent = Some(parent);
                }
                op.status = OperationStatus::Succeeded;
                self.repo.finish_operation(&op, Some(&state)).await
            }
            (Ok(_), OperationKind::Apply) => {
                state.status = StateStatus::Available;
                op.status = OperationStatus::Succeeded;
                self.repo.finish_operation(&op, Some(&state)).await
            }
            (Ok(_), _) => {
                op.status = OperationStatus::Succeeded;
                self.repo.finish_operation(&op, None).await
            }
            (Err(e), kind) => {
                // The record (which clients read) gets the code's fixed message; the detail
                // goes to the log, in this operation's span (its operation id).
                let info = e.client_info();
                tracing::warn!(error = %e, code = e.code(), "operation failed");
                op.status = OperationStatus::Failed;
                op.error = Some(info.clone());
                // A failed save keeps its record, in error, so the user sees why; a failed apply
                // or delete leaves the state as it was (its snapshot is still there).
                state.status = match kind {
                    OperationKind::Save => StateStatus::Error,
                    _ if !was_kept => StateStatus::Error,
                    _ => StateStatus::Available,
                };
                if kind == OperationKind::Save {
                    state.error = Some(info);
                }
                self.repo.finish_operation(&op, Some(&state)).await
            }
        };
        if let Err(e) = outcome {
            // The record stays unfinished; the reconciler ends it from what libvirt shows.
            tracing::error!(error = %e, "could not record the end of the operation");
            return;
        }
        self.settle_quota(&op, &state, was_kept, kept_bytes).await;

        let result_label = if op.status == OperationStatus::Succeeded {
            "succeeded"
        } else {
            "failed"
        };
        metrics::counter!("snapgate_operations_total", "kind" => op.kind.as_str(), "result" => result_label).increment(1);
        metrics::histogram!("snapgate_operation_duration_seconds", "kind" => op.kind.as_str(), "result" => result_label)
            .record(started.elapsed().as_secs_f64());
        tracing::info!(status = %op.status, elapsed_ms = started.elapsed().as_millis() as u64, "operation ended");
        self.waits.announce(op.uuid);
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

    /// Moves the operation's quota units where they belong once it has ended.
    pub(super) async fn settle_quota(
        &self,
        op: &Operation,
        state: &State,
        was_kept: bool,
        kept_bytes: i64,
    ) {
        let tenant = &op.tenant_id;
        let result = match (op.kind, op.status) {
            (OperationKind::Save, OperationStatus::Succeeded) => {
                self.quota.commit(tenant, op.uuid, state.size_bytes).await
            }
            (OperationKind::Delete, OperationStatus::Succeeded) => {
                // Only kept states were counted; a state whose save failed held nothing.
                let (states, bytes) = if was_kept { (1, kept_bytes) } else { (0, 0) };
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

    /// Keeps the operation and its reservation alive while it runs, so other gateways do not
    /// take it for the work of a dead one.
    fn spawn_heartbeat(self: &Arc<Self>, op: &Operation) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        let (op_id, tenant) = (op.uuid, op.tenant_id.clone());
        let every = (self.settings.stale_after / 4).max(std::time::Duration::from_millis(250));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = service.repo.touch_operation(op_id, Utc::now()).await {
                    tracing::warn!(error = %e, "operation heartbeat failed");
                }
                let _ = service
                    .quota
                    .renew(&tenant, op_id, service.settings.quota_lease)
                    .await;
            }
        })
    }
}
