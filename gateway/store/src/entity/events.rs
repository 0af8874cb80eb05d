use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    /// Insertion order; private.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The public order; NULL until the sequencer numbers the row.
    pub seq: Option<i64>,
    pub uuid: Uuid,
    pub kind: String,
    pub tenant_id: String,
    pub instance_uuid: Option<Uuid>,
    pub state_uuid: Option<Uuid>,
    pub operation_uuid: Option<Uuid>,
    /// Microseconds since the epoch.
    pub occurred_at: i64,
    /// JSON object text.
    pub data: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
