//! Bringing the records back in line with the world after a crash, and housekeeping.
//!
//! - Operations left unfinished by a dead gateway (no heartbeat for `stale_after`) are taken
//!   over (their lease epoch raised in a compare-and-set, so one gateway takes each and the
//!   old holder's writes are refused from then on) and ended from what libvirt shows: an
//!   interrupted save is rolled back (its snapshot, if libvirt made it, is deleted, so no
//!   snapshot is left without a record); an interrupted apply is reported failed; an
//!   interrupted delete is finished. The end itself goes through `ending.rs`, as the runner's.
//! - Quota usage is rebuilt from the database (the source of truth) at start and whenever the
//!   quota store has lost its data.
//! - Finished operations older than the retention are purged, and so are policy decisions and
//!   idempotency keys past theirs.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::ending::{Ended, Ender, Outcome};
use super::Service;
use crate::ports::{ComputeError, QuotaReservation, RepoError, SnapshotProbe};
use crate::{ErrorInfo, Operation, OperationKind, ServiceError};

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    pub operations_ended: usize,
    pub operations_pending: usize,
    pub quota_rebuilt: bool,
    pub operations_purged: u64,
    pub decisions_purged: u64,
    pub idempotency_keys_purged: u64,
}

/// Policy decisions deleted per statement, and statements per maintenance pass: a backlog
/// (a lowered retention, a long outage) is worked off over several passes, in short
/// transactions, instead of one long delete.
pub const DECISION_PURGE_BATCH: u64 = 1000;
const DECISION_PURGE_BATCHES_PER_PASS: u32 = 20;

impl Service {
    /// One full pass: stale operations, quota (when `force_quota` or the store is empty), purge.
    pub async fn reconcile(&self, force_quota: bool) -> Result<ReconcileReport, ServiceError> {
        let mut report = ReconcileReport::default();
        let (ended, pending) = self.reconcile_operations().await?;
        report.operations_ended = ended;
        report.operations_pending = pending;
        let primed = match self.quota.is_primed().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "quota store unreachable; usage will be rebuilt when it is back");
                true
            }
        };
        if force_quota || !primed {
            match self.rebuild_quota().await {
                Ok(()) => report.quota_rebuilt = true,
                // Not fatal (a gateway starts while Redis, or one cluster node, is down): a
                // tenant whose Redis data cannot be trusted is rebuilt by the store on its next
                // decision, and the periodic rebuild comes back for the rest.
                Err(e @ ServiceError::QuotaUnavailable { .. }) => {
                    tracing::warn!(error = %e, "quota rebuild postponed: the quota store is unavailable");
                    self.mark_quota_rebuild_due();
                }
                Err(e) => return Err(e),
            }
        } else if self.quota_rebuild_due() && self.repo.unfinished_operations().await?.is_empty() {
            // Periodic drift correction, only while no operation is in flight anywhere: a rebuild
            // racing an operation's end could count it twice or not at all. The database's view
            // is read again after the rebuild; if work started meanwhile, the next pass fixes it.
            let totals = self.repo.tenant_totals().await?;
            self.rebuild_quota().await?;
            report.quota_rebuilt = true;
            if self.repo.tenant_totals().await? != totals
                || !self.repo.unfinished_operations().await?.is_empty()
            {
                self.mark_quota_rebuild_due();
            }
        }
        let before = Utc::now()
            - chrono::Duration::from_std(self.settings.operation_retention)
                .unwrap_or(chrono::Duration::days(7));
        report.operations_purged = self.repo.purge_operations(before).await?;
        report.decisions_purged = self.purge_decisions().await?;
        report.idempotency_keys_purged = self.purge_idempotency_keys().await?;
        self.purge_events().await;
        Ok(report)
    }

    /// Deletes decisions older than `decision_retention`, in bounded batches.
    async fn purge_decisions(&self) -> Result<u64, ServiceError> {
        let before = Utc::now()
            - chrono::Duration::from_std(self.settings.decision_retention)
                .unwrap_or(chrono::Duration::days(30));
        let mut purged = 0;
        for _ in 0..DECISION_PURGE_BATCHES_PER_PASS {
            let n = self
                .repo
                .purge_decisions(before, DECISION_PURGE_BATCH)
                .await?;
            purged += n;
            if n < DECISION_PURGE_BATCH {
                break;
            }
        }
        if purged > 0 {
            tracing::info!(purged, "policy decisions past their retention purged");
            metrics::counter!("snapgate_policy_decisions_purged_total").increment(purged);
        }
        Ok(purged)
    }

    fn quota_rebuild_due(&self) -> bool {
        let last = self
            .last_quota_rebuild
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        last.is_none_or(|t| t.elapsed() >= self.settings.quota_rebuild_interval)
    }

    pub(super) fn mark_quota_rebuild_due(&self) {
        *self
            .last_quota_rebuild
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Recomputes quota usage from the database.
    pub async fn rebuild_quota(&self) -> Result<(), ServiceError> {
        *self
            .last_quota_rebuild
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        let totals = self.repo.tenant_totals().await?;
        // Succeeded saves of the last hour: without them a restarted in-process store or a
        // flushed Redis would forget the hourly window.
        let saves = self
            .repo
            .saves_since(Utc::now() - chrono::Duration::hours(1))
            .await?;
        let live: Vec<QuotaReservation> = self
            .repo
            .unfinished_operations()
            .await?
            .iter()
            .map(super::quota_truth::reservation_of)
            .collect();
        self.quota
            .rebuild(&totals, &saves, &live, self.settings.quota_lease)
            .await?;
        tracing::info!(
            tenants = totals.len(),
            live = live.len(),
            recent_saves = saves.len(),
            "quota usage rebuilt from the database"
        );
        metrics::counter!("snapgate_quota_rebuilds_total").increment(1);
        Ok(())
    }

    /// Takes over and ends the operations of dead (or stopped) gateways. Returns (ended,
    /// still pending).
    async fn reconcile_operations(&self) -> Result<(usize, usize), ServiceError> {
        let stale_before = Utc::now()
            - chrono::Duration::from_std(self.settings.stale_after)
                .unwrap_or(chrono::Duration::minutes(1));
        let mut ended = 0;
        let mut pending = 0;
        for op in self.repo.unfinished_operations().await? {
            if op.updated_at > stale_before {
                continue;
            }
            // Compare-and-set on the lease: of the gateways that see the operation stale, one
            // takes it; the holder it had can write nothing about it from now on.
            let taken = match self
                .repo
                .take_over_operation(
                    op.uuid,
                    op.lease_epoch,
                    stale_before,
                    &self.settings.gateway_id,
                    Utc::now(),
                )
                .await
            {
                Ok(taken) => taken,
                // Another gateway took it first, its heartbeat came back, or it ended.
                Err(RepoError::Fenced(_)) => continue,
                Err(e) => {
                    pending += 1;
                    tracing::warn!(operation = %op.uuid, error = %e, "could not take the operation over yet");
                    continue;
                }
            };
            tracing::info!(operation = %op.uuid, kind = %op.kind, from = op.lease_owner.as_deref().unwrap_or("?"),
                epoch = taken.lease_epoch, "took over an operation whose heartbeat stopped");
            match self.end_interrupted(taken).await {
                Ok(Ended::Recorded) => ended += 1,
                // Taken from us in turn (this pass outlived the stale interval): theirs now.
                Ok(Ended::Fenced) => {}
                Err(e) => {
                    // Still held by us: it goes stale again and is taken over by a later pass.
                    pending += 1;
                    tracing::warn!(operation = %op.uuid, error = %e, "could not reconcile the operation yet");
                }
            }
        }
        if ended > 0 {
            tracing::info!(ended, pending, "reconciled interrupted operations");
        }
        Ok((ended, pending))
    }

    /// Ends an operation taken over, from what libvirt shows, keeping its lease alive meanwhile.
    async fn end_interrupted(&self, op: Operation) -> Result<Ended, ServiceError> {
        let heartbeat = self.spawn_heartbeat(&op);
        let ended = self.end_taken_over(op).await;
        heartbeat.abort();
        ended
    }

    async fn end_taken_over(&self, op: Operation) -> Result<Ended, ServiceError> {
        let state = self.repo.get_state(op.state_uuid).await?;
        let outcome = match (&state, op.kind) {
            // The state row is already gone (a delete that was recorded): just end the operation.
            (None, _) => Outcome::Done,
            (Some(state), OperationKind::Save) => {
                // Roll back: a snapshot libvirt made without our record of its end is removed.
                // (Its first holder, if only paused, deletes one its save makes later.)
                let name = state.snapshot_name();
                if self
                    .compute
                    .probe(&op.host, op.instance_uuid, &name)
                    .await?
                    == SnapshotProbe::Present
                {
                    match self.compute.delete(&op.host, op.instance_uuid, &name).await {
                        Ok(()) | Err(ComputeError::SnapshotNotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                if op.cancel_requested_at.is_some() {
                    // Its client had asked to cancel it: the rollback is what it asked for.
                    Outcome::Cancelled
                } else {
                    Outcome::Failed(ErrorInfo::new(
                        "interrupted",
                        "the gateway stopped during the save; it was rolled back",
                    ))
                }
            }
            (Some(_), OperationKind::Apply) => Outcome::Failed(ErrorInfo::new(
                "interrupted",
                "the gateway stopped during the apply; the instance may or may not have been reverted",
            )),
            (Some(state), OperationKind::Delete) => {
                // Where the runner deleted: the instance's host when the delete began.
                match self
                    .compute
                    .delete(&op.host, op.instance_uuid, &state.snapshot_name())
                    .await
                {
                    Ok(()) | Err(ComputeError::SnapshotNotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                Outcome::Done
            }
        };
        Ok(self
            .end_operation(op, state, outcome, Ender::Takeover)
            .await?)
    }

    /// Runs [`Service::reconcile`] every `every` until the returned handle is aborted.
    pub fn spawn_maintenance(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let result = match service.reconcile(false).await {
                    Ok(_) => "ok",
                    Err(e) => {
                        tracing::warn!(error = %e, "maintenance pass failed");
                        "failed"
                    }
                };
                // Expired states (lifecycle.rs) are deleted on the same pass.
                if let Err(e) = service.expire_states().await {
                    tracing::warn!(error = %e, "expiry pass failed");
                }
                // Lets operators (and tests) see that passes happen, not only what they fix.
                metrics::counter!("snapgate_maintenance_passes_total", "result" => result)
                    .increment(1);
            }
        })
    }
}
