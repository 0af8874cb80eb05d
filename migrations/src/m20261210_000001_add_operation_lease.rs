//! `operations.lease_epoch` and `operations.lease_owner`: who holds an unfinished operation.
//!
//! The gateway that starts an operation holds it at epoch 0. A gateway that takes over an
//! operation whose heartbeat stopped raises the epoch by one in a conditional update, so two
//! cannot both take it; every later write about the operation (running, heartbeat, end) names
//! the epoch its writer holds and is refused when the epoch moved on. A gateway that was only
//! paused therefore cannot finish or undo work another gateway took over. `lease_owner` names
//! the holding gateway (`hostname/pid`), for logs and operators; nothing decides on it.

use sea_orm_migration::{prelude::*, schema::*};

use crate::Operations;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Column {
    LeaseEpoch,
    LeaseOwner,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Operations::Table)
                    .add_column(big_integer(Column::LeaseEpoch).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Operations::Table)
                    .add_column(string_len_null(Column::LeaseOwner, 255))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Column::LeaseOwner, Column::LeaseEpoch] {
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
