//! `events` (issue 12, point 4): the persisted, ordered log of every change.
//!
//! `id` is insertion order (private); `seq` is the public order, NULL until a sequencer pass
//! numbers the row. Appending is one plain INSERT — no lock and no counter in the writer's
//! transaction — and only sequencers write `seq`, one pass at a time, so `seq` is dense and a
//! reader never sees a number appear below one it has already read.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Events {
    Table,
    Id,
    Seq,
    Uuid,
    Kind,
    TenantId,
    InstanceUuid,
    StateUuid,
    OperationUuid,
    /// Microseconds since the epoch.
    OccurredAt,
    /// JSON object text.
    Data,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .if_not_exists()
                    .col(big_integer(Events::Id).auto_increment().primary_key())
                    .col(big_integer_null(Events::Seq).unique_key())
                    .col(uuid(Events::Uuid).unique_key())
                    .col(string_len(Events::Kind, 64))
                    .col(string_len(Events::TenantId, 255))
                    .col(uuid_null(Events::InstanceUuid))
                    .col(uuid_null(Events::StateUuid))
                    .col(uuid_null(Events::OperationUuid))
                    .col(big_integer(Events::OccurredAt))
                    .col(text(Events::Data))
                    .to_owned(),
            )
            .await?;
        // The sequencer finds the rows it has not numbered yet without scanning the log.
        // Both backends have partial indexes; sea-query's builder does not, so plain SQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_events_unsequenced ON events (id) \
                 WHERE seq IS NULL",
            )
            .await?;
        // Retention purges the oldest first.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("ix_events_occurred_at")
                    .table(Events::Table)
                    .col(Events::OccurredAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Events::Table).to_owned())
            .await
    }
}
