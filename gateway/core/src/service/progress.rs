//! Progress and cancellation of running work, on the gateway that runs it.
//!
//! While a save or an apply runs, a sampler reads the instance's libvirt job statistics every
//! [`SAMPLE_EVERY`] and writes what changed on the operation, under its lease (a write per
//! sample at most, none when the sample is unchanged). Phases: `memory` and `disks` while
//! libvirt's job runs, `finishing` once the job is gone but libvirt's call has not returned
//! (it writes the snapshot's metadata and overlays).
//!
//! For a save, the sampler also reads whether a client asked to cancel it (the request may
//! have reached another gateway, see `cancel.rs`) and aborts libvirt's job until an abort
//! lands: a request recorded before the job began is honoured once it begins, and one the
//! sampler did not see is read once more when libvirt's call returns (`runner.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;

use super::event_log::{progress_event, BatchedEvents};
use super::Service;
use crate::ports::{ComputeBackend, JobProgress, RepoError, Repository};
use crate::{phase, Operation, OperationKind, Progress};

/// How often a running operation's libvirt job is sampled.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// When the first sample is taken. Not at once: a save that ends within this (the test
/// driver's, a tiny guest's) has nothing to report, and a read at once cost every such save a
/// libvirt call and a database read on the gateway's cores while the next request waited
/// (docs/BENCHMARKS.md, "States API latency"). A real guest's memory copy takes longer.
pub(super) const FIRST_SAMPLE_AFTER: Duration = Duration::from_millis(100);

/// A running sampler; [`Sampler::stop`] ends it and gives the last sample.
pub(super) struct Sampler {
    task: tokio::task::JoinHandle<()>,
    last: Arc<Mutex<Option<Progress>>>,
}

impl Sampler {
    pub(super) fn stop(self) -> Option<Progress> {
        self.task.abort();
        self.last.lock().map(|l| l.clone()).unwrap_or(None)
    }
}

impl Service {
    /// Starts sampling `op` (a save or an apply; deletes report no progress).
    pub(super) fn spawn_sampler(&self, op: &Operation) -> Option<Sampler> {
        if op.kind == OperationKind::Delete {
            return None;
        }
        let last = Arc::new(Mutex::new(None));
        let (repo, compute, op, shared, events) = (
            self.repo.clone(),
            self.compute.clone(),
            op.clone(),
            last.clone(),
            self.refusals.handle(),
        );
        let task = tokio::spawn(async move { sample(repo, compute, op, shared, events).await });
        Some(Sampler { task, last })
    }

    /// Whether a client asked to cancel the save (read from the database: the request may
    /// have reached another gateway). A read that fails counts as no request.
    pub(super) async fn cancel_requested(&self, op: &Operation) -> bool {
        if op.kind != OperationKind::Save {
            return false;
        }
        match self.repo.cancel_requested(op.uuid).await {
            Ok(at) => at.is_some(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read whether the save was cancelled");
                false
            }
        }
    }
}

async fn sample(
    repo: Arc<dyn Repository>,
    compute: Arc<dyn ComputeBackend>,
    op: Operation,
    last: Arc<Mutex<Option<Progress>>>,
    events: BatchedEvents,
) {
    let first = tokio::time::Instant::now() + FIRST_SAMPLE_AFTER;
    let mut tick = tokio::time::interval_at(first, SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written: Option<Progress> = None;
    let mut aborted = false;
    loop {
        tick.tick().await;
        let sampled = match compute.job_progress(&op.host, op.instance_uuid).await {
            Ok(job) => next_sample(written.as_ref(), job),
            Err(e) => {
                tracing::debug!(error = %e, "cannot sample the libvirt job");
                None
            }
        };
        if let Some(progress) = sampled {
            match repo
                .record_progress(op.uuid, op.lease_epoch, &progress)
                .await
            {
                Ok(()) => {
                    events.push(progress_event(&op, &progress));
                    if let Ok(mut l) = last.lock() {
                        *l = Some(progress.clone());
                    }
                    written = Some(progress);
                }
                Err(RepoError::Fenced(_)) => {
                    // Taken over (or ended): the heartbeat counts and logs it.
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "cannot record the operation's progress"),
            }
        }
        if op.kind == OperationKind::Save && !aborted {
            if let Ok(Some(_)) = repo.cancel_requested(op.uuid).await {
                match compute.abort_job(&op.host, op.instance_uuid).await {
                    Ok(true) => {
                        tracing::info!("aborted the save's libvirt job: its client cancelled it");
                        aborted = true;
                    }
                    // No job yet (or none abortable): try again next tick.
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot abort the save's libvirt job"),
                }
            }
        }
    }
}

/// The sample to write after `written`, from libvirt's answer: `None` when nothing changed or
/// there is nothing to say. A job that is gone after one was seen is `finishing`.
fn next_sample(written: Option<&Progress>, job: Option<JobProgress>) -> Option<Progress> {
    let now = Utc::now();
    let next = match (job, written) {
        // A job being aborted (or between its parts) may report no total: what was known is
        // kept rather than forgotten, so a record never goes from a percent back to none.
        (Some(job), _) => Progress {
            phase: job.phase.to_owned(),
            bytes_processed: i64::try_from(job.bytes_processed).unwrap_or(i64::MAX),
            bytes_total: job
                .bytes_total
                .and_then(|t| i64::try_from(t).ok())
                .or_else(|| written.and_then(|w| w.bytes_total)),
            percent: job.percent().or_else(|| written.and_then(|w| w.percent)),
            updated_at: now,
        },
        (None, Some(seen)) if seen.phase != phase::FINISHING => Progress {
            phase: phase::FINISHING.to_owned(),
            percent: Some(99.0),
            updated_at: now,
            ..seen.clone()
        },
        (None, _) => return None,
    };
    match written {
        Some(w) if w.same_as(&next) => None,
        _ => Some(next),
    }
}

/// The progress a finished save records: its last sample, at 100 percent.
pub(super) fn completed(last: Option<Progress>) -> Option<Progress> {
    last.map(|p| Progress {
        phase: phase::FINISHING.to_owned(),
        percent: Some(100.0),
        bytes_total: p.bytes_total,
        bytes_processed: p.bytes_processed,
        updated_at: Utc::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(processed: u64, total: u64, remaining: u64) -> JobProgress {
        JobProgress {
            phase: phase::MEMORY,
            bytes_processed: processed,
            bytes_total: Some(total),
            bytes_remaining: Some(remaining),
        }
    }

    #[test]
    fn samples_are_written_only_when_they_change_and_a_gone_job_is_finishing() {
        let first = next_sample(None, Some(job(10, 100, 90))).expect("a first sample");
        assert_eq!(first.percent, Some(10.0));
        assert!(next_sample(Some(&first), Some(job(10, 100, 90))).is_none());
        let second = next_sample(Some(&first), Some(job(60, 100, 40))).unwrap();
        assert_eq!(second.percent, Some(60.0));
        // The last pass never reads 100 while libvirt's job runs.
        assert_eq!(job(100, 100, 0).percent(), Some(99.0));
        let finishing = next_sample(Some(&second), None).unwrap();
        assert_eq!(finishing.phase, phase::FINISHING);
        assert_eq!(finishing.bytes_processed, 60);
        assert!(next_sample(Some(&finishing), None).is_none());
        // No job seen yet: nothing to say.
        assert!(next_sample(None, None).is_none());
    }

    #[test]
    fn a_job_that_stops_reporting_its_total_keeps_the_last_percent() {
        let first = next_sample(None, Some(job(25, 100, 75))).unwrap();
        let aborting = JobProgress {
            bytes_total: None,
            ..job(30, 0, 0)
        };
        let next = next_sample(Some(&first), Some(aborting)).unwrap();
        assert_eq!((next.percent, next.bytes_total), (Some(25.0), Some(100)));
        assert_eq!(next.bytes_processed, 30);
    }
}
