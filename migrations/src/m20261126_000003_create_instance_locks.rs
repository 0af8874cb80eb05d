//! `instance_locks`: at most one state-changing operation per instance. The primary key is the
//! lock, so the rule holds across several gateway replicas sharing one database.

use sea_orm_migration::{prelude::*, schema::*};

use crate::Operations;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum InstanceLocks {
    Table,
    InstanceUuid,
    OperationUuid,
    AcquiredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InstanceLocks::Table)
                    .if_not_exists()
                    .col(pk_uuid(InstanceLocks::InstanceUuid))
                    .col(uuid(InstanceLocks::OperationUuid))
                    .col(timestamp_with_time_zone(InstanceLocks::AcquiredAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_instance_locks_operation")
                            .from(InstanceLocks::Table, InstanceLocks::OperationUuid)
                            .to(Operations::Table, Operations::Uuid)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(InstanceLocks::Table).to_owned())
            .await
    }
}
