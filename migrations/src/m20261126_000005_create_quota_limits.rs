//! `quota_limits`: per-tenant limits set by an admin (`-1` is unlimited). Tenants without a
//! row get the configured defaults.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum QuotaLimits {
    Table,
    TenantId,
    States,
    StateBytes,
    ConcurrentOperations,
    SavesPerHour,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(QuotaLimits::Table)
                    .if_not_exists()
                    .col(string_len(QuotaLimits::TenantId, 255).primary_key())
                    .col(big_integer(QuotaLimits::States))
                    .col(big_integer(QuotaLimits::StateBytes))
                    .col(big_integer(QuotaLimits::ConcurrentOperations))
                    .col(big_integer(QuotaLimits::SavesPerHour))
                    .col(timestamp_with_time_zone(QuotaLimits::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(QuotaLimits::Table).to_owned())
            .await
    }
}
