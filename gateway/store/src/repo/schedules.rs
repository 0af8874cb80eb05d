//! [`ScheduleStore`] on sea-orm: schedules, their claimed runs, and the states they made
//! (issue 12, point 2).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use snapgate_core::events::NewEvent;
use snapgate_core::ports::{RepoError, ScheduleStore, ScheduleUpdate};
use snapgate_core::{ErrorInfo, Retention, SaveMode, Schedule, ScheduleRun, State};
use uuid::Uuid;

use super::{end_transaction, SeaRepository};
use crate::convert::{micros, state_from_row};
use crate::entity::{instance_states, schedules};
use crate::errors::db_error;

use schedules::Column as C;

fn mode_text(mode: SaveMode) -> &'static str {
    match mode {
        SaveMode::Internal => "internal",
        SaveMode::External => "external",
        SaveMode::Auto => "auto",
    }
}

fn mode_from(text: &str) -> Result<SaveMode, RepoError> {
    match text {
        "internal" => Ok(SaveMode::Internal),
        "external" => Ok(SaveMode::External),
        "auto" => Ok(SaveMode::Auto),
        other => Err(RepoError::Other(format!("corrupt row: mode {other:?}"))),
    }
}

fn keep(n: Option<u32>) -> Option<i32> {
    n.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

fn kept(n: Option<i32>) -> Option<u32> {
    n.and_then(|n| u32::try_from(n).ok())
}

fn row(s: &Schedule) -> schedules::ActiveModel {
    let r = s.retention;
    schedules::ActiveModel {
        uuid: Set(s.uuid),
        instance_uuid: Set(s.instance_uuid),
        tenant_id: Set(s.tenant_id.clone()),
        cron: Set(s.cron.clone()),
        time_zone: Set(s.time_zone.clone()),
        name_pattern: Set(s.name_pattern.clone()),
        mode: Set(s.mode.map(|m| mode_text(m).to_owned())),
        enabled: Set(s.enabled),
        keep_last: Set(keep(r.keep_last)),
        keep_hourly: Set(keep(r.keep_hourly)),
        keep_daily: Set(keep(r.keep_daily)),
        keep_weekly: Set(keep(r.keep_weekly)),
        keep_monthly: Set(keep(r.keep_monthly)),
        next_run_at: Set(s.next_run_at.map(micros)),
        last_run_scheduled_for: Set(None),
        last_run_started_at: Set(None),
        last_run_outcome: Set(None),
        last_run_code: Set(None),
        last_run_message: Set(None),
        last_run_state: Set(None),
        last_run_operation: Set(None),
        created_at: Set(micros(s.created_at)),
        updated_at: Set(micros(s.updated_at)),
    }
}

fn from_row(m: schedules::Model) -> Result<Schedule, RepoError> {
    let last_run = match (
        m.last_run_scheduled_for,
        m.last_run_started_at,
        m.last_run_outcome,
    ) {
        (Some(scheduled_for), Some(started_at), Some(outcome)) => Some(ScheduleRun {
            scheduled_for,
            started_at,
            outcome: outcome
                .parse()
                .map_err(|e: String| RepoError::Other(format!("corrupt row: {e}")))?,
            error: m.last_run_code.map(|code| ErrorInfo {
                code,
                message: m.last_run_message.unwrap_or_default(),
            }),
            state: m.last_run_state,
            operation: m.last_run_operation,
        }),
        _ => None,
    };
    Ok(Schedule {
        uuid: m.uuid,
        instance_uuid: m.instance_uuid,
        tenant_id: m.tenant_id,
        cron: m.cron,
        time_zone: m.time_zone,
        name_pattern: m.name_pattern,
        mode: m.mode.as_deref().map(mode_from).transpose()?,
        enabled: m.enabled,
        retention: Retention {
            keep_last: kept(m.keep_last),
            keep_hourly: kept(m.keep_hourly),
            keep_daily: kept(m.keep_daily),
            keep_weekly: kept(m.keep_weekly),
            keep_monthly: kept(m.keep_monthly),
        },
        next_run_at: m.next_run_at,
        last_run,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// The `last_run_*` columns of `run`, for an update.
fn run_columns(run: &ScheduleRun) -> Vec<(C, SimpleExpr)> {
    vec![
        (
            C::LastRunScheduledFor,
            Expr::value(Some(micros(run.scheduled_for))),
        ),
        (
            C::LastRunStartedAt,
            Expr::value(Some(micros(run.started_at))),
        ),
        (
            C::LastRunOutcome,
            Expr::value(Some(run.outcome.as_str().to_owned())),
        ),
        (
            C::LastRunCode,
            Expr::value(run.error.as_ref().map(|e| e.code.clone())),
        ),
        (
            C::LastRunMessage,
            Expr::value(run.error.as_ref().map(|e| e.message.clone())),
        ),
        (C::LastRunState, Expr::value(run.state)),
        (C::LastRunOperation, Expr::value(run.operation)),
    ]
}

#[async_trait]
impl ScheduleStore for SeaRepository {
    async fn states_of_schedule(&self, schedule: Uuid) -> Result<Vec<State>, RepoError> {
        instance_states::Entity::find()
            .filter(instance_states::Column::ScheduleId.eq(schedule))
            .order_by_desc(instance_states::Column::Date)
            .order_by_desc(instance_states::Column::Uuid)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(state_from_row)
            .collect()
    }

    async fn create_schedule(
        &self,
        schedule: &Schedule,
        max_per_tenant: u64,
    ) -> Result<bool, RepoError> {
        let _gate = self.write_gate().await;
        let txn = self.db.begin().await.map_err(db_error)?;
        let result = async {
            super::lock_tenant_creations(self, &txn, "schedules", &schedule.tenant_id).await?;
            let count = schedules::Entity::find()
                .filter(C::TenantId.eq(schedule.tenant_id.as_str()))
                .count(&txn)
                .await
                .map_err(db_error)?;
            if count >= max_per_tenant {
                return Ok(false);
            }
            schedules::Entity::insert(row(schedule))
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
            Ok(true)
        }
        .await;
        end_transaction(txn, result).await
    }

    async fn get_schedule(&self, id: Uuid) -> Result<Option<Schedule>, RepoError> {
        schedules::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(db_error)?
            .map(from_row)
            .transpose()
    }

    async fn list_schedules(&self, instance: Uuid) -> Result<Vec<Schedule>, RepoError> {
        schedules::Entity::find()
            .filter(C::InstanceUuid.eq(instance))
            .order_by_asc(C::CreatedAt)
            .order_by_asc(C::Uuid)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn update_schedule(&self, update: &ScheduleUpdate) -> Result<(), RepoError> {
        let s = &update.schedule;
        let r = s.retention;
        let _gate = self.write_gate().await;
        let mut query = schedules::Entity::update_many()
            .col_expr(C::Cron, Expr::value(s.cron.clone()))
            .col_expr(C::TimeZone, Expr::value(s.time_zone.clone()))
            .col_expr(C::NamePattern, Expr::value(s.name_pattern.clone()))
            .col_expr(
                C::Mode,
                Expr::value(s.mode.map(|m| mode_text(m).to_owned())),
            )
            .col_expr(C::Enabled, Expr::value(s.enabled))
            .col_expr(C::KeepLast, Expr::value(keep(r.keep_last)))
            .col_expr(C::KeepHourly, Expr::value(keep(r.keep_hourly)))
            .col_expr(C::KeepDaily, Expr::value(keep(r.keep_daily)))
            .col_expr(C::KeepWeekly, Expr::value(keep(r.keep_weekly)))
            .col_expr(C::KeepMonthly, Expr::value(keep(r.keep_monthly)))
            .col_expr(C::UpdatedAt, Expr::value(micros(s.updated_at)))
            .filter(C::Uuid.eq(s.uuid));
        if update.reschedule {
            query = query.col_expr(C::NextRunAt, Expr::value(s.next_run_at.map(micros)));
        }
        let changed = query.exec(&self.db).await.map_err(db_error)?.rows_affected;
        if changed == 0 {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }

    async fn delete_schedule(&self, id: Uuid) -> Result<bool, RepoError> {
        let _gate = self.write_gate().await;
        let deleted = schedules::Entity::delete_by_id(id)
            .exec(&self.db)
            .await
            .map_err(db_error)?
            .rows_affected;
        Ok(deleted > 0)
    }

    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Schedule>, RepoError> {
        schedules::Entity::find()
            .filter(C::Enabled.eq(true))
            .filter(C::NextRunAt.lte(micros(now)))
            .order_by_asc(C::NextRunAt)
            .order_by_asc(C::Uuid)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn claim_schedule_run(
        &self,
        schedule: Uuid,
        due: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        run: &ScheduleRun,
    ) -> Result<bool, RepoError> {
        let _gate = self.write_gate().await;
        let mut query = schedules::Entity::update_many()
            .col_expr(C::NextRunAt, Expr::value(next.map(micros)))
            .filter(C::Uuid.eq(schedule))
            .filter(C::Enabled.eq(true))
            .filter(C::NextRunAt.eq(micros(due)));
        for (column, value) in run_columns(run) {
            query = query.col_expr(column, value);
        }
        let changed = query.exec(&self.db).await.map_err(db_error)?.rows_affected;
        Ok(changed == 1)
    }

    async fn record_schedule_run(
        &self,
        schedule: Uuid,
        run: &ScheduleRun,
    ) -> Result<(), RepoError> {
        let _gate = self.write_gate().await;
        let mut query = schedules::Entity::update_many()
            .filter(C::Uuid.eq(schedule))
            .filter(C::LastRunScheduledFor.eq(micros(run.scheduled_for)));
        for (column, value) in run_columns(run) {
            query = query.col_expr(column, value);
        }
        query.exec(&self.db).await.map_err(db_error)?;
        Ok(())
    }

    async fn record_schedule_run_logged(
        &self,
        schedule: Uuid,
        run: &ScheduleRun,
        events: &[NewEvent],
    ) -> Result<(), RepoError> {
        let _gate = self.write_gate().await;
        let txn = self.db.begin().await.map_err(db_error)?;
        let result = async {
            let mut query = schedules::Entity::update_many()
                .filter(C::Uuid.eq(schedule))
                .filter(C::LastRunScheduledFor.eq(micros(run.scheduled_for)));
            for (column, value) in run_columns(run) {
                query = query.col_expr(column, value);
            }
            // A newer run claimed since: this one's record and events are not written.
            if query.exec(&txn).await.map_err(db_error)?.rows_affected == 0 {
                return Ok(0);
            }
            super::events::insert(&txn, events).await?;
            Ok(events.len())
        }
        .await;
        super::events::count_appended(end_transaction(txn, result).await?);
        Ok(())
    }
}
