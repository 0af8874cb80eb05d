//! `idempotency_keys`: the answers of state-changing calls sent with an `Idempotency-Key`, so a
//! retry gets the first answer back from any gateway instead of doing the work again.
//!
//! One row per (tenant, key): the tenant is the key's namespace, so no tenant can reach another
//! tenant's row. A row is first a claim (no `answer`) held by the request that wrote it, then,
//! in the transaction that records the accepted operation, the answer. Rows expire at
//! `expires_at` and are purged by the maintenance loop.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum IdempotencyKeys {
    Table,
    TenantId,
    IdempotencyKey,
    /// Hex SHA-256 of the request's canonical form (caller, operation, target, body).
    Fingerprint,
    /// The request holding the key; writing the answer needs it to still hold it.
    ClaimToken,
    ClaimedAt,
    ExpiresAt,
    /// The operation the stored answer accepted.
    OperationUuid,
    /// The stored answer (JSON); null while the first request is being processed.
    Answer,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .if_not_exists()
                    .col(string_len(IdempotencyKeys::TenantId, 255))
                    .col(string_len(IdempotencyKeys::IdempotencyKey, 255))
                    .col(string_len(IdempotencyKeys::Fingerprint, 64))
                    .col(uuid(IdempotencyKeys::ClaimToken))
                    .col(timestamp_with_time_zone(IdempotencyKeys::ClaimedAt))
                    .col(timestamp_with_time_zone(IdempotencyKeys::ExpiresAt))
                    .col(uuid_null(IdempotencyKeys::OperationUuid))
                    .col(text_null(IdempotencyKeys::Answer))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::TenantId)
                            .col(IdempotencyKeys::IdempotencyKey),
                    )
                    .to_owned(),
            )
            .await?;
        // The purge takes the oldest expired rows first.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_idempotency_keys_expires_at")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
            .await
    }
}
