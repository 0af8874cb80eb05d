//! Persistence of schedules and their runs (issue 12, point 2). Its own port beside
//! [`super::Repository`]; `snapgate-store` implements it on the same database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::repository::RepoError;
use crate::events::NewEvent;
use crate::{Schedule, ScheduleRun, State};

/// A schedule's columns a `PATCH` may change, written as given.
#[derive(Debug, Clone)]
pub struct ScheduleUpdate {
    pub schedule: Schedule,
    /// Also write `next_run_at` (the timetable or `enabled` changed); otherwise the column
    /// is left alone, so an edit never undoes a run another gateway has just claimed.
    pub reschedule: bool,
}

#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// The states `schedule` made, any status, newest first.
    async fn states_of_schedule(&self, schedule: Uuid) -> Result<Vec<State>, RepoError>;

    /// Records a new schedule unless its tenant already has `max_per_tenant` (checked and
    /// inserted under one per-tenant lock, so concurrent creations cannot pass it together).
    /// `false` when the limit refused it.
    async fn create_schedule(
        &self,
        schedule: &Schedule,
        max_per_tenant: u64,
    ) -> Result<bool, RepoError>;

    async fn get_schedule(&self, id: Uuid) -> Result<Option<Schedule>, RepoError>;

    /// The schedules of an instance, oldest first.
    async fn list_schedules(&self, instance: Uuid) -> Result<Vec<Schedule>, RepoError>;

    /// Writes the editable columns (see [`ScheduleUpdate`]). `NotFound` when it is gone.
    async fn update_schedule(&self, update: &ScheduleUpdate) -> Result<(), RepoError>;

    /// `false` when there was nothing to delete.
    async fn delete_schedule(&self, id: Uuid) -> Result<bool, RepoError>;

    /// At most `limit` enabled schedules whose `next_run_at` is at or before `now`, the
    /// longest due first.
    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Schedule>, RepoError>;

    /// Claims the run of `schedule` due at `due`: one conditional update moves `next_run_at`
    /// from `due` to `next` and records `run` as the last run. `true` for the one caller
    /// whose update matched; every other gateway (and any retry) gets `false`.
    async fn claim_schedule_run(
        &self,
        schedule: Uuid,
        due: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        run: &ScheduleRun,
    ) -> Result<bool, RepoError>;

    /// Records how a claimed run went, unless a later run has been claimed since (the last
    /// run's `scheduled_for` is compared), so a slow run never overwrites a newer one.
    async fn record_schedule_run(&self, schedule: Uuid, run: &ScheduleRun)
        -> Result<(), RepoError>;

    /// [`ScheduleStore::record_schedule_run`] and, in the same transaction and only when the
    /// run was recorded, the events (`schedule.run`, `schedule.skipped`) as plain appends.
    async fn record_schedule_run_logged(
        &self,
        schedule: Uuid,
        run: &ScheduleRun,
        events: &[NewEvent],
    ) -> Result<(), RepoError>;
}
