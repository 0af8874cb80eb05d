use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "policy_decisions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub time: DateTimeUtc,
    pub tenant: String,
    pub instance_uuid: Uuid,
    pub operation: String,
    pub dry_run: bool,
    pub plugin: String,
    pub plugin_sha256: String,
    pub mode: String,
    pub outcome: String,
    pub overridden: bool,
    pub code: Option<String>,
    pub reason: Option<String>,
    /// JSON array of strings.
    pub warnings: String,
    pub latency_us: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
