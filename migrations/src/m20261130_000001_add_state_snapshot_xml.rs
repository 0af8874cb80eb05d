//! `instance_states.snapshot_xml`: the libvirt snapshot XML a save produced, kept so the
//! snapshot can be defined again (`VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE`) on the host an
//! instance moved to. NULL for states saved before it was kept.

use sea_orm_migration::{prelude::*, schema::*};

use crate::InstanceStates;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Column {
    SnapshotXml,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(InstanceStates::Table)
                    .add_column(text_null(Column::SnapshotXml))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(InstanceStates::Table)
                    .drop_column(Column::SnapshotXml)
                    .to_owned(),
            )
            .await
    }
}
