//! `instance_placements`: the placement index, the compute host each instance was last seen on
//! and the owner its domain metadata named then. A cache of the hosts' inventories: rows are
//! written and removed by the gateway as hosts report, never by hand.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum InstancePlacements {
    Table,
    InstanceUuid,
    Host,
    OwnerTenant,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InstancePlacements::Table)
                    .if_not_exists()
                    .col(pk_uuid(InstancePlacements::InstanceUuid))
                    .col(string_len(InstancePlacements::Host, 255))
                    .col(string_len_null(InstancePlacements::OwnerTenant, 255))
                    .col(timestamp_with_time_zone(InstancePlacements::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // A host's inventory is compared with the rows recorded on it.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_instance_placements_host")
                    .table(InstancePlacements::Table)
                    .col(InstancePlacements::Host)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(InstancePlacements::Table).to_owned())
            .await
    }
}
