//! Waiting for operations to end, served by notification.
//!
//! Every waiter of a gateway listens on one in-process channel. What feeds it:
//! - this gateway's own operations, the moment they end (`announce`);
//! - one shared watcher per gateway ([`Service::spawn_operation_watcher`]): on PostgreSQL a
//!   `LISTEN` feed of the ends every replica announces in its `finish_operation` transaction;
//!   where the database has no feed (SQLite), one query every [`SHARED_POLL_EVERY`] for all
//!   awaited operations at once, and only while some are awaited.
//!
//! A waiter reads its operation from the database when it starts, when the channel names it
//! (or lagged) and at its deadline, never on a timer. Each tenant holds at most
//! `max_waits_per_tenant` waits at once on a gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;
use uuid::Uuid;

use super::Service;
use crate::ports::OperationEnd;
use crate::ServiceError;

/// Where the database has no feed of operation ends, the shared watcher asks for all awaited
/// operations at this interval (one query, whatever the number of waiters).
pub(super) const SHARED_POLL_EVERY: Duration = Duration::from_millis(250);

/// After the feed broke, the watcher opens a new one after this pause.
const FEED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// At most this many operation ids per shared query.
const CHECK_CHUNK: usize = 500;

pub(super) struct Waits {
    /// Wakes waiters: the id of every operation known to have ended.
    ended: broadcast::Sender<Uuid>,
    book: Arc<Mutex<Book>>,
    max_per_tenant: usize,
}

#[derive(Default)]
struct Book {
    /// Awaited operation → number of waiters on it.
    awaited: HashMap<Uuid, usize>,
    /// Tenant → waits it holds open.
    per_tenant: HashMap<String, usize>,
}

/// A wait in progress; leaving it (drop) frees the tenant's slot.
pub(super) struct WaitSlot {
    book: Arc<Mutex<Book>>,
    tenant: String,
    operation: Uuid,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut book = lock(&self.book);
        decrement(&mut book.awaited, &self.operation);
        decrement(&mut book.per_tenant, &self.tenant);
        metrics::gauge!("snapgate_waits_in_progress").decrement(1.0);
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

fn lock(book: &Mutex<Book>) -> MutexGuard<'_, Book> {
    // Counters only: a panic elsewhere cannot leave them worse than a stale count.
    book.lock().unwrap_or_else(|e| e.into_inner())
}

impl Waits {
    pub fn new(max_per_tenant: usize) -> Self {
        let (ended, _) = broadcast::channel(4096);
        Self {
            ended,
            book: Arc::default(),
            max_per_tenant,
        }
    }

    /// An operation ended: wake its waiters on this gateway.
    pub fn announce(&self, operation: Uuid) {
        let _ = self.ended.send(operation);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Uuid> {
        self.ended.subscribe()
    }

    /// Takes one of the tenant's wait slots, or refuses with 429 `too_many_waits`.
    pub fn enter(&self, tenant: &str, operation: Uuid) -> Result<WaitSlot, ServiceError> {
        let mut book = lock(&self.book);
        let held = book.per_tenant.get(tenant).copied().unwrap_or(0);
        if held >= self.max_per_tenant {
            metrics::counter!("snapgate_waits_refused_total").increment(1);
            return Err(ServiceError::Throttled {
                code: "too_many_waits",
                message: format!(
                    "this tenant already holds {held} waits open on this gateway (the limit); \
                     poll GET /v1/operations/{{id}} or retry later"
                ),
                retry_after_secs: 1,
            });
        }
        *book.per_tenant.entry(tenant.to_owned()).or_default() += 1;
        *book.awaited.entry(operation).or_default() += 1;
        metrics::gauge!("snapgate_waits_in_progress").increment(1.0);
        Ok(WaitSlot {
            book: self.book.clone(),
            tenant: tenant.to_owned(),
            operation,
        })
    }

    fn awaited(&self) -> Vec<Uuid> {
        lock(&self.book).awaited.keys().copied().collect()
    }
}

/// Counts the database reads made on behalf of waiters, by why they were made. Without
/// per-waiter polling this stays near two per wait plus the shared checks.
pub(super) fn count_read(reason: &'static str) {
    metrics::counter!("snapgate_wait_database_reads_total", "reason" => reason).increment(1);
}

impl Service {
    /// The one watcher of operation ends for every waiter of this gateway; runs until the
    /// handle is aborted.
    pub fn spawn_operation_watcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                match service.repo.operation_end_feed().await {
                    Ok(Some(mut feed)) => {
                        tracing::debug!("listening for operation ends");
                        // Whatever ended before the feed was open was not announced to it.
                        service.check_awaited("feed_opened").await;
                        loop {
                            match feed.next().await {
                                Ok(OperationEnd::Ended(id)) => service.waits.announce(id),
                                Ok(OperationEnd::Gap) => service.check_awaited("feed_gap").await,
                                Err(e) => {
                                    tracing::warn!(error = %e, "the feed of operation ends broke; reopening it");
                                    break;
                                }
                            }
                        }
                    }
                    Ok(None) => service.poll_awaited_forever().await,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for operation ends; retrying");
                    }
                }
                // Waiters still wake at their deadline meanwhile.
                tokio::time::sleep(FEED_RETRY_AFTER).await;
            }
        })
    }

    /// Without a feed: one query for all awaited operations per tick, none while nobody waits.
    async fn poll_awaited_forever(&self) {
        let mut tick = tokio::time::interval(SHARED_POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check_awaited("shared_poll").await;
        }
    }

    /// Announces every awaited operation the database shows ended.
    async fn check_awaited(&self, reason: &'static str) {
        let awaited = self.waits.awaited();
        for chunk in awaited.chunks(CHECK_CHUNK) {
            count_read(reason);
            match self.repo.finished_operations(chunk).await {
                Ok(ended) => ended.into_iter().for_each(|id| self.waits.announce(id)),
                Err(e) => tracing::warn!(error = %e, "checking awaited operations failed"),
            }
        }
    }
}
