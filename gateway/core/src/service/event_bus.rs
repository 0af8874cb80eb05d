//! The running gateway's side of the event log: the sequencer loop and the wake-ups of readers.
//!
//! - The sequencer numbers committed events (`EventLog::sequence_events`), one pass shortly
//!   after this gateway appended ([`EventBus::appended`], gathering for [`GATHER_FOR`]) and
//!   otherwise every [`SEQUENCE_EVERY`], so the events appended by a gateway that died are
//!   numbered by the others.
//! - Readers (SSE streams, the webhook dispatcher) wait on [`EventBus::subscribe`], a watch of
//!   the highest numbered `seq`, fed by the local sequencer and, on PostgreSQL, by every
//!   gateway's announcements (`LISTEN snapgate_events`). They fall back to reading the log every
//!   [`READ_FALLBACK_EVERY`], since a notification can be lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::ports::{EventFeedSource, EventLog};

/// A pass runs at least this often, whether or not this gateway appended.
pub const SEQUENCE_EVERY: Duration = Duration::from_millis(250);

/// Readers read the log at least this often, woken or not.
pub const READ_FALLBACK_EVERY: Duration = Duration::from_secs(1);

/// After this gateway appended, the pass waits this long for more appends, so a burst of ended
/// operations is numbered in one transaction instead of one each: on SQLite every pass is a
/// write that the next save's acceptance waits behind (docs/BENCHMARKS.md). Readers hear of an
/// event this much later at most.
pub const GATHER_FOR: Duration = Duration::from_millis(10);

/// Rows numbered per pass (a pass after a burst loops until none are left).
pub const SEQUENCE_BATCH: u64 = 1000;

/// After the feed broke, a new one is opened after this pause.
const FEED_RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct EventBus {
    log: Arc<dyn EventLog>,
    feeds: Arc<dyn EventFeedSource>,
    /// This gateway appended: run a pass now.
    wake: Notify,
    /// The highest numbered `seq` known here.
    latest: watch::Sender<i64>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("latest", &*self.latest.borrow())
            .finish_non_exhaustive()
    }
}

impl EventBus {
    pub fn new(log: Arc<dyn EventLog>, feeds: Arc<dyn EventFeedSource>) -> Arc<Self> {
        let (latest, _) = watch::channel(0);
        Arc::new(Self {
            log,
            feeds,
            wake: Notify::new(),
            latest,
        })
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// The highest numbered `seq` known on this gateway; changes when a pass (here or, on
    /// PostgreSQL, on any gateway) numbers new events.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.latest.subscribe()
    }

    /// The highest numbered `seq` known here (0 before the first pass).
    pub fn latest(&self) -> i64 {
        *self.latest.borrow()
    }

    /// This gateway appended events: run a sequencer pass now rather than at the next tick.
    pub fn appended(&self) {
        self.wake.notify_one();
    }

    fn publish(&self, seq: i64) {
        self.latest.send_if_modified(|known| {
            if seq > *known {
                *known = seq;
                true
            } else {
                false
            }
        });
    }

    /// Runs the sequencer and the feed listener until the handle is aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let bus = self.clone();
        tokio::spawn(async move {
            let listener = tokio::spawn(bus.clone().listen());
            // Aborting this task drops the listener's handle, which does not stop it: do so.
            struct AbortOnDrop(tokio::task::JoinHandle<()>);
            impl Drop for AbortOnDrop {
                fn drop(&mut self) {
                    self.0.abort();
                }
            }
            let _listener = AbortOnDrop(listener);
            bus.sequence_forever().await;
        })
    }

    /// One pass now (and more while a pass fills its batch); publishes the new maximum.
    pub async fn sequence_once(&self) -> Result<i64, crate::ports::RepoError> {
        loop {
            let before = self.latest();
            let max = self.log.sequence_events(SEQUENCE_BATCH).await?;
            self.publish(max);
            if max - before < SEQUENCE_BATCH as i64 {
                return Ok(max);
            }
        }
    }

    async fn sequence_forever(&self) {
        loop {
            if let Err(e) = self.sequence_once().await {
                tracing::warn!(error = %e, "event sequencer pass failed; retrying");
            }
            if tokio::time::timeout(SEQUENCE_EVERY, self.wake.notified())
                .await
                .is_ok()
            {
                tokio::time::sleep(GATHER_FOR).await;
            }
        }
    }

    /// Other gateways' announcements (PostgreSQL); nothing to do where there is no feed.
    async fn listen(self: Arc<Self>) {
        loop {
            let mut feed = match self.feeds.event_feed().await {
                Ok(Some(feed)) => feed,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for event announcements; retrying");
                    tokio::time::sleep(FEED_RETRY_AFTER).await;
                    continue;
                }
            };
            loop {
                match feed.next().await {
                    Ok(Some(seq)) => self.publish(seq),
                    // Announcements may have been lost: learn the maximum from the log.
                    Ok(None) => {
                        if let Ok(seq) = self.log.last_event_seq().await {
                            self.publish(seq);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event announcement feed broke; reopening");
                        tokio::time::sleep(FEED_RETRY_AFTER).await;
                        break;
                    }
                }
            }
        }
    }
}
