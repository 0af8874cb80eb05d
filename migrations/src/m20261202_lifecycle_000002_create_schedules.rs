//! `schedules` (issue 12): saves of an instance on a cron timetable, their retention, and the
//! latest run. `next_run_at` is the claim: a gateway takes a due run by moving it, with a
//! conditional update, from the slot it read to the next one.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Schedules {
    Table,
    Uuid,
    InstanceUuid,
    /// The tenant that made it (the instance's owner then); runs act as its member.
    TenantId,
    Cron,
    TimeZone,
    NamePattern,
    /// `internal|external|auto`, or NULL for the gateway's configured mode.
    Mode,
    Enabled,
    KeepLast,
    KeepHourly,
    KeepDaily,
    KeepWeekly,
    KeepMonthly,
    /// The slot the next run is due for; NULL while disabled.
    NextRunAt,
    LastRunScheduledFor,
    LastRunStartedAt,
    /// `started|succeeded|failed|skipped`.
    LastRunOutcome,
    LastRunCode,
    LastRunMessage,
    LastRunState,
    LastRunOperation,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .if_not_exists()
                    .col(pk_uuid(Schedules::Uuid))
                    .col(uuid(Schedules::InstanceUuid))
                    .col(string_len(Schedules::TenantId, 255))
                    .col(string_len(Schedules::Cron, 255))
                    .col(string_len(Schedules::TimeZone, 64))
                    .col(string_len(Schedules::NamePattern, 255))
                    .col(string_len_null(Schedules::Mode, 16))
                    .col(boolean(Schedules::Enabled))
                    .col(integer_null(Schedules::KeepLast))
                    .col(integer_null(Schedules::KeepHourly))
                    .col(integer_null(Schedules::KeepDaily))
                    .col(integer_null(Schedules::KeepWeekly))
                    .col(integer_null(Schedules::KeepMonthly))
                    .col(timestamp_with_time_zone_null(Schedules::NextRunAt))
                    .col(timestamp_with_time_zone_null(
                        Schedules::LastRunScheduledFor,
                    ))
                    .col(timestamp_with_time_zone_null(Schedules::LastRunStartedAt))
                    .col(string_len_null(Schedules::LastRunOutcome, 16))
                    .col(string_len_null(Schedules::LastRunCode, 64))
                    .col(text_null(Schedules::LastRunMessage))
                    .col(uuid_null(Schedules::LastRunState))
                    .col(uuid_null(Schedules::LastRunOperation))
                    .col(timestamp_with_time_zone(Schedules::CreatedAt))
                    .col(timestamp_with_time_zone(Schedules::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Every gateway asks for the due ones every few seconds.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("ix_schedules_enabled_next_run")
                    .table(Schedules::Table)
                    .col(Schedules::Enabled)
                    .col(Schedules::NextRunAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("ix_schedules_instance")
                    .table(Schedules::Table)
                    .col(Schedules::InstanceUuid)
                    .to_owned(),
            )
            .await?;
        // The per-tenant limit counts a tenant's schedules.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("ix_schedules_tenant")
                    .table(Schedules::Table)
                    .col(Schedules::TenantId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Schedules::Table).to_owned())
            .await
    }
}
