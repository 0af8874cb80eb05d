//! Persistence for a state's life after its save (issue 12): edits and expiry. Its own port beside [`super::Repository`]; `snapgate-store` implements both on
//! one database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::repository::RepoError;
use crate::State;

/// A validated edit of a state. `None` leaves a field as it is; for the nullable fields,
/// `Some(None)` clears it (JSON merge-patch).
#[derive(Debug, Clone, Default)]
pub struct StatePatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// What an edit came to.
#[derive(Debug, Clone)]
pub enum PatchOutcome {
    Updated(Box<State>),
    /// The edit changes `expires_at` of a state whose expiry has passed (at `now`): it is on
    /// its way out and cannot be brought back.
    Expired,
}

#[async_trait]
pub trait LifecycleStore: Send + Sync + 'static {
    /// Applies `patch` to `state` of `instance`, in one conditional statement: only while the
    /// state is `available` or `error` (no operation on it), and, when the patch touches
    /// `expires_at`, only while the state has not expired at `now`. Errors: `NotFound`,
    /// `WrongStatus`, `DuplicateName`.
    async fn update_state(
        &self,
        instance: Uuid,
        state: Uuid,
        patch: &StatePatch,
        now: DateTime<Utc>,
    ) -> Result<PatchOutcome, RepoError>;

    /// At most `limit` `available` or `error` states whose `expires_at` is at or before `now`,
    /// the longest expired first.
    async fn expired_states(&self, now: DateTime<Utc>, limit: u64)
        -> Result<Vec<State>, RepoError>;
}
