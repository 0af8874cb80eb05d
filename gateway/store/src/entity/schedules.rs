use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "schedules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub uuid: Uuid,
    pub instance_uuid: Uuid,
    pub tenant_id: String,
    pub cron: String,
    pub time_zone: String,
    pub name_pattern: String,
    pub mode: Option<String>,
    pub enabled: bool,
    pub keep_last: Option<i32>,
    pub keep_hourly: Option<i32>,
    pub keep_daily: Option<i32>,
    pub keep_weekly: Option<i32>,
    pub keep_monthly: Option<i32>,
    pub next_run_at: Option<DateTimeUtc>,
    pub last_run_scheduled_for: Option<DateTimeUtc>,
    pub last_run_started_at: Option<DateTimeUtc>,
    pub last_run_outcome: Option<String>,
    pub last_run_code: Option<String>,
    pub last_run_message: Option<String>,
    pub last_run_state: Option<Uuid>,
    pub last_run_operation: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
