//! `instance_states.expires_at` and `instance_states.schedule_id` (issue 12): when a state is
//! to be deleted by the maintenance loop (NULL: never), and the schedule that made it (NULL: a
//! user's save; retention never touches those). One `ALTER TABLE` per column: SQLite takes
//! one change per statement.

use sea_orm_migration::{prelude::*, schema::*};

use crate::InstanceStates;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Column {
    ExpiresAt,
    ScheduleId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(InstanceStates::Table)
                    .add_column(timestamp_with_time_zone_null(Column::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(InstanceStates::Table)
                    .add_column(uuid_null(Column::ScheduleId))
                    .to_owned(),
            )
            .await?;
        // The maintenance loop asks for the oldest expired states first.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("ix_instance_states_expires_at")
                    .table(InstanceStates::Table)
                    .col(Column::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        // Retention reads the states one schedule made.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("ix_instance_states_schedule")
                    .table(InstanceStates::Table)
                    .col(Column::ScheduleId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for index in [
            "ix_instance_states_expires_at",
            "ix_instance_states_schedule",
        ] {
            manager
                .drop_index(
                    Index::drop()
                        .name(index)
                        .table(InstanceStates::Table)
                        .to_owned(),
                )
                .await?;
        }
        for column in [Column::ExpiresAt, Column::ScheduleId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(InstanceStates::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
