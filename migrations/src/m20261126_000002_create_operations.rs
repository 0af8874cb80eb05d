//! `operations`: long work (save, apply, delete) that clients poll or wait on.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Operations {
    Table,
    Uuid,
    Kind,
    Status,
    InstanceUuid,
    StateUuid,
    TenantId,
    Host,
    ErrorCode,
    ErrorMessage,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
    ReservedBytes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Operations::Table)
                    .if_not_exists()
                    .col(pk_uuid(Operations::Uuid))
                    .col(string_len(Operations::Kind, 16))
                    .col(string_len(Operations::Status, 16))
                    .col(uuid(Operations::InstanceUuid))
                    // No foreign key: a delete operation outlives the state it removed.
                    .col(uuid(Operations::StateUuid))
                    .col(string_len(Operations::TenantId, 255))
                    .col(string_len(Operations::Host, 255))
                    .col(string_len_null(Operations::ErrorCode, 64))
                    .col(text_null(Operations::ErrorMessage))
                    .col(timestamp_with_time_zone(Operations::CreatedAt))
                    .col(timestamp_with_time_zone(Operations::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Operations::StartedAt))
                    .col(timestamp_with_time_zone_null(Operations::FinishedAt))
                    .col(big_integer(Operations::ReservedBytes).default(0))
                    .to_owned(),
            )
            .await?;
        // The reconciler asks for unfinished operations at every start.
        manager
            .create_index(
                Index::create()
                    .name("ix_operations_status")
                    .table(Operations::Table)
                    .col(Operations::Status)
                    .to_owned(),
            )
            .await?;
        // The purge deletes by age of finished operations.
        manager
            .create_index(
                Index::create()
                    .name("ix_operations_finished_at")
                    .table(Operations::Table)
                    .col(Operations::FinishedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Operations::Table).to_owned())
            .await
    }
}
