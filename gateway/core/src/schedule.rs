//! Schedules (issue 12): saves made on a cron timetable, with a retention over the states a
//! schedule made. The flow is `service/schedules.rs`; the retention rule is
//! `service/retention.rs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ErrorInfo, SaveMode, TenantId};

/// Which of a schedule's states survive each of its successful saves. Every rule that is set
/// keeps states on its own; a state any rule keeps is kept. With no rule set, nothing is
/// deleted. The buckets (hour, day, ISO week, month) are those of the schedule's time zone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep the `n` newest states.
    #[schema(minimum = 1)]
    pub keep_last: Option<u32>,
    /// For the `n` newest hours that have a state, keep the newest state of each hour.
    #[schema(minimum = 1)]
    pub keep_hourly: Option<u32>,
    /// For the `n` newest days that have a state, keep the newest state of each day.
    #[schema(minimum = 1)]
    pub keep_daily: Option<u32>,
    /// For the `n` newest ISO weeks (Monday to Sunday) that have a state, keep the newest of each.
    #[schema(minimum = 1)]
    pub keep_weekly: Option<u32>,
    /// For the `n` newest months that have a state, keep the newest state of each month.
    #[schema(minimum = 1)]
    pub keep_monthly: Option<u32>,
}

impl Retention {
    /// True when at least one rule is set (otherwise retention deletes nothing).
    pub fn is_set(&self) -> bool {
        self.rules().iter().any(|(_, n)| n.is_some())
    }

    pub fn rules(&self) -> [(&'static str, Option<u32>); 5] {
        [
            ("keep_last", self.keep_last),
            ("keep_hourly", self.keep_hourly),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
        ]
    }
}

/// How a schedule's run ended (so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The save was accepted and is running.
    Started,
    /// The save succeeded (and retention was applied).
    Succeeded,
    /// The save was accepted but failed; `error` says why.
    Failed,
    /// No save was made: the instance was busy, the quota full, the policy denied… (`error`).
    Skipped,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Started => "started",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Skipped => "skipped",
        }
    }
}

impl std::str::FromStr for RunOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "started" => RunOutcome::Started,
            "succeeded" => RunOutcome::Succeeded,
            "failed" => RunOutcome::Failed,
            "skipped" => RunOutcome::Skipped,
            other => return Err(format!("unknown RunOutcome: {other}")),
        })
    }
}

/// The latest run of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleRun {
    /// The time slot of the timetable this run was for.
    pub scheduled_for: DateTime<Utc>,
    /// When a gateway took the run.
    pub started_at: DateTime<Utc>,
    pub outcome: RunOutcome,
    /// Why the run was skipped or failed: the code and message the save answered.
    pub error: Option<ErrorInfo>,
    /// The state the run saved, if it got that far.
    pub state: Option<Uuid>,
    /// The save's operation.
    pub operation: Option<Uuid>,
}

/// A schedule of saves of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    pub uuid: Uuid,
    pub instance_uuid: Uuid,
    /// The tenant that made the schedule; runs act as this tenant's member.
    /// Never sent; `default` lets a client (the CLI) decode the record it was given.
    #[serde(skip_serializing, default)]
    pub tenant_id: TenantId,
    /// Five fields (minute hour day-of-month month day-of-week) or six (seconds first).
    pub cron: String,
    /// IANA time zone the timetable and the name's date fields are read in.
    pub time_zone: String,
    /// The name of each state, with date fields (`%Y %m %d %H %M %S %%`).
    pub name_pattern: String,
    /// The save mode; the gateway's configured mode when `null`.
    pub mode: Option<SaveMode>,
    pub enabled: bool,
    pub retention: Retention,
    /// The next slot a run is due for; `null` while disabled.
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run: Option<ScheduleRun>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
