use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "operations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub uuid: Uuid,
    pub kind: String,
    pub status: String,
    pub instance_uuid: Uuid,
    pub state_uuid: Uuid,
    pub tenant_id: String,
    pub host: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub reserved_bytes: i64,
    pub lease_epoch: i64,
    pub lease_owner: Option<String>,
    pub progress_phase: Option<String>,
    pub progress_bytes_processed: Option<i64>,
    pub progress_bytes_total: Option<i64>,
    pub progress_percent: Option<f64>,
    pub progress_updated_at: Option<DateTimeUtc>,
    pub cancel_requested_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
