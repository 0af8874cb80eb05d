//! `policy_decisions`: every plugin verdict with its request context, for admins to audit.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum PolicyDecisions {
    Table,
    Id,
    Time,
    Tenant,
    InstanceUuid,
    Operation,
    DryRun,
    Plugin,
    PluginSha256,
    Mode,
    Outcome,
    Overridden,
    Code,
    Reason,
    /// JSON array of strings.
    Warnings,
    LatencyUs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PolicyDecisions::Table)
                    .if_not_exists()
                    .col(pk_uuid(PolicyDecisions::Id))
                    .col(timestamp_with_time_zone(PolicyDecisions::Time))
                    .col(string_len(PolicyDecisions::Tenant, 255))
                    .col(uuid(PolicyDecisions::InstanceUuid))
                    .col(string_len(PolicyDecisions::Operation, 16))
                    .col(boolean(PolicyDecisions::DryRun))
                    .col(string_len(PolicyDecisions::Plugin, 255))
                    .col(string_len(PolicyDecisions::PluginSha256, 64))
                    .col(string_len(PolicyDecisions::Mode, 16))
                    .col(string_len(PolicyDecisions::Outcome, 16))
                    .col(boolean(PolicyDecisions::Overridden))
                    .col(string_len_null(PolicyDecisions::Code, 255))
                    .col(text_null(PolicyDecisions::Reason))
                    .col(text(PolicyDecisions::Warnings))
                    .col(big_integer(PolicyDecisions::LatencyUs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_policy_decisions_time")
                    .table(PolicyDecisions::Table)
                    .col(PolicyDecisions::Time)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_policy_decisions_tenant_time")
                    .table(PolicyDecisions::Table)
                    .col(PolicyDecisions::Tenant)
                    .col(PolicyDecisions::Time)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PolicyDecisions::Table).to_owned())
            .await
    }
}
