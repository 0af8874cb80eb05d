//! The event log's persistence (issue 12, point 4). Implemented by `snapgate-store` on the
//! same database as [`super::Repository`].
//!
//! Appending is one plain INSERT: no lock, no counter row and no `max()` in a request's or an
//! operation end's transaction (an earlier design serialized operation ends on an advisory lock
//! and let a quota race through). Numbering is the sequencer's alone ([`EventLog::sequence_events`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::repository::RepoError;
use crate::events::{Event, EventFilter, NewEvent};

#[async_trait]
pub trait EventLog: Send + Sync {
    /// One INSERT of all the rows (no lock); numbered later by the sequencer.
    async fn append_events(&self, events: &[NewEvent]) -> Result<(), RepoError>;
    /// Numbered events with `seq > after` matching the filter, in `seq` order, at most `limit`.
    async fn events_after(
        &self,
        after: i64,
        filter: &EventFilter,
        limit: u64,
    ) -> Result<Vec<Event>, RepoError>;
    /// The highest `seq` numbered so far (0 when none).
    async fn last_event_seq(&self) -> Result<i64, RepoError>;
    /// One sequencer pass: numbers up to `batch` rows; returns the new maximum seq.
    async fn sequence_events(&self, batch: u64) -> Result<i64, RepoError>;
    /// Deletes numbered events that occurred before `before`, at most `batch`.
    async fn purge_events(&self, before: DateTime<Utc>, batch: u64) -> Result<u64, RepoError>;
}

/// Announcements of newly numbered events from every gateway's sequencer (PostgreSQL
/// `LISTEN snapgate_events`), so readers on this gateway wake up for events numbered elsewhere.
#[async_trait]
pub trait EventSeqFeed: Send {
    /// The next announced maximum `seq`, or `None` when the feed reconnected and announcements
    /// may have been lost (readers then read the log once).
    async fn next(&mut self) -> Result<Option<i64>, RepoError>;
}

/// Where the database has a feed of sequencer announcements (PostgreSQL); implemented beside
/// [`EventLog`] by `snapgate-store`. `None` on SQLite, where one gateway is the only writer.
#[async_trait]
pub trait EventFeedSource: Send + Sync {
    async fn event_feed(&self) -> Result<Option<Box<dyn EventSeqFeed>>, RepoError>;
}
