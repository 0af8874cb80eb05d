//! How far a running operation is, and whether a client asked to cancel it.
//!
//! `progress_*`: the last sample of libvirt's job statistics the gateway running the operation
//! wrote (phase, bytes processed of a total, percent, when). Written under the operation's
//! lease, at most one write per sample and none when the sample did not change.
//!
//! `cancel_requested_at`: when `DELETE /v1/operations/{id}` was first accepted for the
//! operation, by whichever gateway received it. The gateway running the save reads it (it may
//! not be the one that received the call) and ends the save as cancelled.

use sea_orm_migration::{prelude::*, schema::*};

use crate::Operations;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Column {
    ProgressPhase,
    ProgressBytesProcessed,
    ProgressBytesTotal,
    ProgressPercent,
    ProgressUpdatedAt,
    CancelRequestedAt,
}

fn columns() -> Vec<ColumnDef> {
    vec![
        string_len_null(Column::ProgressPhase, 32),
        big_integer_null(Column::ProgressBytesProcessed),
        big_integer_null(Column::ProgressBytesTotal),
        double_null(Column::ProgressPercent),
        timestamp_with_time_zone_null(Column::ProgressUpdatedAt),
        timestamp_with_time_zone_null(Column::CancelRequestedAt),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for mut column in columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Operations::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Column::CancelRequestedAt,
            Column::ProgressUpdatedAt,
            Column::ProgressPercent,
            Column::ProgressBytesTotal,
            Column::ProgressBytesProcessed,
            Column::ProgressPhase,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Operations::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
