//! Schedules (issue 12, point 2): saves on a cron timetable, with a retention over the states
//! each schedule made.
//!
//! - **Runs are claimed in the database.** Every gateway looks for due schedules every
//!   `lifecycle.schedule_check_interval_secs`; a due run is taken by one conditional update
//!   that moves `next_run_at` from the slot it read to the next slot after *now*
//!   ([`ScheduleStore::claim_schedule_run`]). Only one gateway's update matches, so each slot
//!   runs once however many gateways look; and slots missed while every gateway was down
//!   collapse into the one run that takes the oldest of them.
//! - **A run is a user's save.** [`Service::save`] as a member of the schedule's tenant: the
//!   tenant wall, quota, policy chain and one operation per instance apply unchanged. Whatever
//!   refuses it (instance busy, quota full, policy denial, host down…) is recorded as the run
//!   `skipped` with the refusal's code and message (`last_run`), never raised.
//! - **Retention** runs after each successful save, on the `available` states this schedule
//!   made (`instance_states.schedule_id`), never on a user's: the ordinary delete, one at a
//!   time (one operation per instance); a delete that is refused stops it until the next
//!   successful save.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use tracing::Instrument;
use uuid::Uuid;

use super::access::require;
use super::timetable::{self, Timetable};
use super::{retention, ChangeInput, SaveInput, Service, StateChange};
use crate::auth::{Caller, Role};
use crate::events::{EventKind, NewEvent};
use crate::ports::{RepoError, ScheduleUpdate};
use crate::{
    ErrorInfo, Operation, OperationStatus, Retention, RunOutcome, SaveMode, Schedule, ScheduleRun,
    ServiceError, StateStatus,
};

/// The largest `keep_*` value taken.
pub const MAX_KEEP: u32 = 10_000;

/// A new schedule, as the client sent it.
#[derive(Debug, Clone)]
pub struct ScheduleInput {
    pub cron: String,
    /// `UTC` when absent.
    pub time_zone: Option<String>,
    pub name_pattern: String,
    pub mode: Option<SaveMode>,
    /// `true` when absent.
    pub enabled: Option<bool>,
    pub retention: Option<Retention>,
}

/// A merge-patch of a retention: `None` leaves a rule, `Some(None)` removes it.
#[derive(Debug, Clone, Default)]
pub struct RetentionEdit {
    pub keep_last: Option<Option<u32>>,
    pub keep_hourly: Option<Option<u32>>,
    pub keep_daily: Option<Option<u32>>,
    pub keep_weekly: Option<Option<u32>>,
    pub keep_monthly: Option<Option<u32>>,
}

/// A merge-patch of a schedule (`None` leaves a field as it is).
#[derive(Debug, Clone, Default)]
pub struct ScheduleEdit {
    pub cron: Option<String>,
    pub time_zone: Option<String>,
    pub name_pattern: Option<String>,
    /// `Some(None)`: the gateway's configured mode.
    pub mode: Option<Option<SaveMode>>,
    pub enabled: Option<bool>,
    /// `Some(None)`: no retention at all.
    pub retention: Option<Option<RetentionEdit>>,
}

fn check_retention(r: &Retention) -> Result<(), ServiceError> {
    for (rule, n) in r.rules() {
        if let Some(n) = n {
            if n == 0 || n > MAX_KEEP {
                return Err(ServiceError::bad_request(
                    "invalid_retention",
                    format!("{rule} must be between 1 and {MAX_KEEP} (leave it out to not use it)"),
                ));
            }
        }
    }
    Ok(())
}

fn merge_retention(r: &mut Retention, edit: RetentionEdit) {
    let apply = |field: &mut Option<u32>, e: Option<Option<u32>>| {
        if let Some(v) = e {
            *field = v;
        }
    };
    apply(&mut r.keep_last, edit.keep_last);
    apply(&mut r.keep_hourly, edit.keep_hourly);
    apply(&mut r.keep_daily, edit.keep_daily);
    apply(&mut r.keep_weekly, edit.keep_weekly);
    apply(&mut r.keep_monthly, edit.keep_monthly);
}

/// The caller a schedule's runs act as: a member of the tenant that made it.
fn run_caller(s: &Schedule) -> Caller {
    let mut caller = Caller::new(s.tenant_id.clone(), Role::Member);
    caller.subject = format!("snapgate:schedule:{}", s.uuid);
    caller
}

fn zone_of(s: &Schedule) -> Tz {
    s.time_zone.parse().unwrap_or(Tz::UTC)
}

impl Service {
    pub async fn create_schedule(
        &self,
        caller: &Caller,
        instance: Uuid,
        input: ScheduleInput,
    ) -> Result<Schedule, ServiceError> {
        let now = Utc::now().trunc_subsecs(6);
        let time_zone = input.time_zone.unwrap_or_else(|| "UTC".to_owned());
        let table = Timetable::parse(&input.cron, &time_zone, now)?;
        timetable::check_name_pattern(&input.name_pattern)?;
        let retention = input.retention.unwrap_or_default();
        check_retention(&retention)?;
        let visible = self.visible_instance(caller, instance).await?;
        require(caller, Role::Member)?;
        let enabled = input.enabled.unwrap_or(true);
        let schedule = Schedule {
            uuid: Uuid::now_v7(),
            instance_uuid: instance,
            // The instance's owner: its saves count against that tenant, as a user's would.
            tenant_id: visible.owner,
            cron: input.cron,
            time_zone,
            name_pattern: input.name_pattern,
            mode: input.mode,
            enabled,
            retention,
            next_run_at: enabled.then(|| table.next_after(now)).flatten(),
            last_run: None,
            created_at: now,
            updated_at: now,
        };
        let limit = self.settings.lifecycle.max_schedules_per_tenant;
        if !self.schedules.create_schedule(&schedule, limit).await? {
            return Err(ServiceError::ScheduleLimitExceeded { limit });
        }
        tracing::info!(schedule = %schedule.uuid, %instance, cron = %schedule.cron, "schedule created");
        Ok(schedule)
    }

    pub async fn list_schedules(
        &self,
        caller: &Caller,
        instance: Uuid,
    ) -> Result<Vec<Schedule>, ServiceError> {
        require(caller, Role::Reader)?;
        self.visible_instance(caller, instance).await?;
        let mut all = self.schedules.list_schedules(instance).await?;
        // Schedules another tenant made before an ownership change stay hidden.
        all.retain(|s| caller.can_see(&s.tenant_id));
        Ok(all)
    }

    pub async fn get_schedule(
        &self,
        caller: &Caller,
        instance: Uuid,
        id: Uuid,
    ) -> Result<Schedule, ServiceError> {
        require(caller, Role::Reader)?;
        self.visible_schedule(caller, instance, id).await
    }

    pub async fn update_schedule(
        &self,
        caller: &Caller,
        instance: Uuid,
        id: Uuid,
        edit: ScheduleEdit,
    ) -> Result<Schedule, ServiceError> {
        let now = Utc::now().trunc_subsecs(6);
        if let Some(pattern) = &edit.name_pattern {
            timetable::check_name_pattern(pattern)?;
        }
        let mut s = self.visible_schedule(caller, instance, id).await?;
        require(caller, Role::Member)?;
        let reschedule = edit.cron.is_some() || edit.time_zone.is_some() || edit.enabled.is_some();
        if let Some(cron) = edit.cron {
            s.cron = cron;
        }
        if let Some(zone) = edit.time_zone {
            s.time_zone = zone;
        }
        let table = Timetable::parse(&s.cron, &s.time_zone, now)?;
        if let Some(pattern) = edit.name_pattern {
            s.name_pattern = pattern;
        }
        if let Some(mode) = edit.mode {
            s.mode = mode;
        }
        if let Some(enabled) = edit.enabled {
            s.enabled = enabled;
        }
        match edit.retention {
            Some(None) => s.retention = Retention::default(),
            Some(Some(r)) => merge_retention(&mut s.retention, r),
            None => {}
        }
        check_retention(&s.retention)?;
        if reschedule {
            s.next_run_at = s.enabled.then(|| table.next_after(now)).flatten();
        }
        s.updated_at = now;
        match self
            .schedules
            .update_schedule(&ScheduleUpdate {
                schedule: s.clone(),
                reschedule,
            })
            .await
        {
            Err(RepoError::NotFound) => return Err(ServiceError::not_found("schedule", id)),
            other => other?,
        }
        // Read back: a run may have been claimed meanwhile (its next_run_at and last_run).
        self.visible_schedule(caller, instance, id).await
    }

    /// Deletes a schedule. The states it made stay (retention no longer touches them).
    pub async fn delete_schedule(
        &self,
        caller: &Caller,
        instance: Uuid,
        id: Uuid,
    ) -> Result<(), ServiceError> {
        self.visible_schedule(caller, instance, id).await?;
        require(caller, Role::Member)?;
        if !self.schedules.delete_schedule(id).await? {
            return Err(ServiceError::not_found("schedule", id));
        }
        tracing::info!(schedule = %id, %instance, "schedule deleted");
        Ok(())
    }

    /// A schedule of `instance` the caller may see; anything else is 404 `schedule_not_found`
    /// (after the instance's own wall: 404 `instance_not_found`).
    async fn visible_schedule(
        &self,
        caller: &Caller,
        instance: Uuid,
        id: Uuid,
    ) -> Result<Schedule, ServiceError> {
        let (visible, found) = tokio::join!(
            self.visible_instance(caller, instance),
            self.schedules.get_schedule(id)
        );
        visible?;
        match found? {
            Some(s) if s.instance_uuid == instance && caller.can_see(&s.tenant_id) => Ok(s),
            _ => Err(ServiceError::not_found("schedule", id)),
        }
    }

    /// Looks for due schedules every `every`, until the handle is aborted.
    pub fn spawn_scheduler(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = service.run_due_schedules(Utc::now()).await {
                    tracing::warn!(error = %e, "looking for due schedules failed");
                }
            }
        })
    }

    /// Claims and starts the runs due at `now` (at most `lifecycle.schedule_batch`); returns
    /// how many this gateway claimed.
    pub async fn run_due_schedules(
        self: &Arc<Self>,
        now: DateTime<Utc>,
    ) -> Result<usize, ServiceError> {
        let now = now.trunc_subsecs(6);
        let due = self
            .schedules
            .due_schedules(now, self.settings.lifecycle.schedule_batch)
            .await?;
        let mut claimed = 0;
        for s in due {
            let Some(slot) = s.next_run_at else { continue };
            // The next slot after now, not after the one due: slots missed while no gateway
            // ran are not run one by one. A timetable that no longer parses stops.
            let next = Timetable::parse(&s.cron, &s.time_zone, now)
                .ok()
                .and_then(|t| t.next_after(now.max(slot)));
            let run = ScheduleRun {
                scheduled_for: slot,
                started_at: now,
                outcome: RunOutcome::Started,
                error: None,
                state: None,
                operation: None,
            };
            if !self
                .schedules
                .claim_schedule_run(s.uuid, slot, next, &run)
                .await?
            {
                continue; // another gateway took it
            }
            claimed += 1;
            metrics::counter!("snapgate_schedule_runs_claimed_total").increment(1);
            let guard = self.tasks.enter();
            let service = self.clone();
            let span = tracing::info_span!("schedule_run", schedule = %s.uuid,
                instance = %s.instance_uuid, scheduled_for = %slot);
            tokio::spawn(
                async move {
                    let _guard = guard;
                    service.run_schedule(s, run).await;
                }
                .instrument(span),
            );
        }
        Ok(claimed)
    }

    async fn run_schedule(self: Arc<Self>, s: Schedule, mut run: ScheduleRun) {
        let caller = run_caller(&s);
        let input = SaveInput {
            name: timetable::render_name(&s.name_pattern, run.scheduled_for, zone_of(&s)),
            description: None,
            mode: s.mode,
            dry_run: false,
            expires_at: None,
            schedule_id: Some(s.uuid),
            // Exactly-once comes from the run's claim in the database, not from a key.
            idempotency_key: None,
        };
        let accepted = match self.save(&caller, s.instance_uuid, input).await {
            Ok(StateChange::Accepted(a)) => a,
            Ok(StateChange::DryRun(_)) => return,
            Err(e) => {
                tracing::info!(code = e.code(), error = %e, "scheduled save skipped");
                metrics::counter!("snapgate_schedule_runs_total", "result" => "skipped", "reason" => e.code())
                    .increment(1);
                run.outcome = RunOutcome::Skipped;
                run.error = Some(ErrorInfo::new(e.code(), e.to_string()));
                let event = NewEvent {
                    instance_uuid: Some(s.instance_uuid),
                    ..NewEvent::new(
                        EventKind::ScheduleSkipped,
                        s.tenant_id.clone(),
                        serde_json::json!({
                            "schedule_id": s.uuid,
                            "scheduled_for": run.scheduled_for,
                            "code": e.code(),
                            "reason": e.to_string(),
                        }),
                    )
                };
                self.record_run_logged(&s, &run, event).await;
                return;
            }
        };
        run.state = Some(accepted.state.uuid);
        run.operation = Some(accepted.operation.uuid);
        let event = NewEvent {
            instance_uuid: Some(s.instance_uuid),
            state_uuid: Some(accepted.state.uuid),
            operation_uuid: Some(accepted.operation.uuid),
            ..NewEvent::new(
                EventKind::ScheduleRun,
                s.tenant_id.clone(),
                serde_json::json!({
                    "schedule_id": s.uuid,
                    "scheduled_for": run.scheduled_for,
                    "state_name": accepted.state.name,
                }),
            )
        };
        self.record_run_logged(&s, &run, event).await;
        let Some(op) = self.operation_end(&caller, accepted.operation.uuid).await else {
            return; // the record stays `started`; the reconciler ends the operation
        };
        if op.status == OperationStatus::Succeeded {
            run.outcome = RunOutcome::Succeeded;
            metrics::counter!("snapgate_schedule_runs_total", "result" => "succeeded", "reason" => "")
                .increment(1);
            self.record_run(&s, &run).await;
            self.apply_retention(&s, &caller).await;
        } else {
            run.outcome = RunOutcome::Failed;
            run.error = op.error.clone();
            metrics::counter!("snapgate_schedule_runs_total", "result" => "failed", "reason" => "")
                .increment(1);
            self.record_run(&s, &run).await;
        }
    }

    /// Records the run and its event in one transaction.
    async fn record_run_logged(&self, s: &Schedule, run: &ScheduleRun, event: NewEvent) {
        match self
            .schedules
            .record_schedule_run_logged(s.uuid, run, std::slice::from_ref(&event))
            .await
        {
            Ok(()) => self.bus.appended(),
            Err(e) => tracing::warn!(error = %e, "could not record the schedule's run"),
        }
    }

    async fn record_run(&self, s: &Schedule, run: &ScheduleRun) {
        if let Err(e) = self.schedules.record_schedule_run(s.uuid, run).await {
            tracing::warn!(error = %e, "could not record the schedule's run");
        }
    }

    /// Waits for an operation this gateway started to end; `None` when it cannot tell.
    async fn operation_end(&self, caller: &Caller, id: Uuid) -> Option<Operation> {
        loop {
            match self
                .wait_operation(caller, id, Duration::from_secs(60))
                .await
            {
                Ok(w) if w.finished => return Some(w.operation),
                Ok(_) => continue,
                // The tenant holds all its waits: ask again in a moment.
                Err(ServiceError::Throttled { .. }) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, operation = %id, "cannot follow the scheduled save");
                    return None;
                }
            }
        }
    }

    /// Deletes, one at a time, this schedule's `available` states its retention does not keep.
    async fn apply_retention(self: &Arc<Self>, s: &Schedule, caller: &Caller) {
        if !s.retention.is_set() {
            return;
        }
        let states = match self.schedules.states_of_schedule(s.uuid).await {
            Ok(states) => states,
            Err(e) => {
                tracing::warn!(error = %e, "retention skipped: cannot list the schedule's states");
                return;
            }
        };
        let candidates: Vec<_> = states
            .into_iter()
            .filter(|st| {
                st.status == StateStatus::Available
                    && st.instance_uuid == s.instance_uuid
                    && st.tenant_id == s.tenant_id
                    && st.schedule_id == Some(s.uuid)
            })
            .collect();
        let dated: Vec<_> = candidates.iter().map(|st| (st.uuid, st.date)).collect();
        let keep = retention::kept(&dated, &s.retention, zone_of(s));
        // Oldest first, so an interrupted pass has removed the least useful ones.
        for state in candidates
            .iter()
            .rev()
            .filter(|st| !keep.contains(&st.uuid))
        {
            let op = match self
                .delete(caller, s.instance_uuid, state.uuid, ChangeInput::default())
                .await
            {
                Ok(StateChange::Accepted(a)) => a.operation,
                Ok(StateChange::DryRun(_)) => return,
                Err(e) => {
                    tracing::info!(state = %state.uuid, code = e.code(), error = %e,
                        "retention stopped; it goes on after the next successful save");
                    return;
                }
            };
            metrics::counter!("snapgate_retention_deletes_total").increment(1);
            tracing::info!(state = %state.uuid, name = %state.name, operation = %op.uuid, "retention deletes a state");
            if self.operation_end(caller, op.uuid).await.is_none() {
                return;
            }
        }
    }
}
