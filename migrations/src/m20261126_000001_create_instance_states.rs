//! `instance_states`: the seed blueprint's table (uuid, name, date), extended with what a
//! live snapshot needs to be listed, applied, counted against quota and diagnosed.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum InstanceStates {
    Table,
    Uuid,
    Name,
    /// Creation time (the blueprint's name for it).
    Date,
    InstanceUuid,
    TenantId,
    Status,
    Description,
    Host,
    SizeBytes,
    MemoryBytes,
    IncludesMemory,
    /// JSON array of strings.
    DiskFormats,
    /// JSON object (`CpuInfo`), or NULL.
    Cpu,
    CpuXml,
    SnapshotKind,
    Parent,
    ErrorCode,
    ErrorMessage,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InstanceStates::Table)
                    .if_not_exists()
                    .col(pk_uuid(InstanceStates::Uuid))
                    .col(string_len(InstanceStates::Name, 255))
                    .col(timestamp_with_time_zone(InstanceStates::Date))
                    .col(uuid(InstanceStates::InstanceUuid))
                    .col(string_len(InstanceStates::TenantId, 255))
                    .col(string_len(InstanceStates::Status, 16))
                    .col(text_null(InstanceStates::Description))
                    .col(string_len(InstanceStates::Host, 255))
                    .col(big_integer_null(InstanceStates::SizeBytes))
                    .col(big_integer_null(InstanceStates::MemoryBytes))
                    .col(boolean(InstanceStates::IncludesMemory))
                    .col(text(InstanceStates::DiskFormats))
                    .col(text_null(InstanceStates::Cpu))
                    .col(text_null(InstanceStates::CpuXml))
                    .col(string_len(InstanceStates::SnapshotKind, 16))
                    .col(uuid_null(InstanceStates::Parent))
                    .col(string_len_null(InstanceStates::ErrorCode, 64))
                    .col(text_null(InstanceStates::ErrorMessage))
                    .col(timestamp_with_time_zone(InstanceStates::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // A name is unique per instance; `begin_save` turns a violation into `DuplicateName`.
        manager
            .create_index(
                Index::create()
                    .name("uq_instance_states_instance_name")
                    .table(InstanceStates::Table)
                    .col(InstanceStates::InstanceUuid)
                    .col(InstanceStates::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Serves the listing: newest first, uuid as the tiebreak for equal dates.
        manager
            .create_index(
                Index::create()
                    .name("ix_instance_states_instance_date_uuid")
                    .table(InstanceStates::Table)
                    .col(InstanceStates::InstanceUuid)
                    .col((InstanceStates::Date, IndexOrder::Desc))
                    .col(InstanceStates::Uuid)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_instance_states_tenant")
                    .table(InstanceStates::Table)
                    .col(InstanceStates::TenantId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(InstanceStates::Table).to_owned())
            .await
    }
}
