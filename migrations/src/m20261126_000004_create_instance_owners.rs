//! `instance_owners`: the tenant an instance belongs to, when an admin set it explicitly
//! (it overrides the owner read from the domain metadata).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum InstanceOwners {
    Table,
    InstanceUuid,
    TenantId,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InstanceOwners::Table)
                    .if_not_exists()
                    .col(pk_uuid(InstanceOwners::InstanceUuid))
                    .col(string_len(InstanceOwners::TenantId, 255))
                    .col(timestamp_with_time_zone(InstanceOwners::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(InstanceOwners::Table).to_owned())
            .await
    }
}
