use sea_orm::entity::prelude::*;

/// One idempotency key of one tenant: a claim while its first request runs, then its answer.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub idempotency_key: String,
    pub fingerprint: String,
    pub claim_token: Uuid,
    pub claimed_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub operation_uuid: Option<Uuid>,
    pub answer: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
