//! `webhooks` and `webhook_deliveries` (issue 12, point 5): a tenant's targets, and one row per
//! event per webhook (the outbox the dispatcher sends from, at least once).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Webhooks {
    Table,
    Uuid,
    TenantId,
    Url,
    /// `whsec_<base64>`: the signatures' HMAC key.
    Secret,
    /// A JSON array of event kinds; `[]`: every kind.
    Events,
    Description,
    Enabled,
    DisabledReason,
    ConsecutiveFailures,
    /// The last event `seq` fanned out to this webhook; moved by a conditional update only.
    EventCursor,
    CreatedAt,
}

#[derive(DeriveIden)]
pub enum WebhookDeliveries {
    Table,
    Uuid,
    WebhookUuid,
    EventSeq,
    EventUuid,
    /// The event's JSON: the body of every attempt.
    Payload,
    /// `pending|delivered|failed`.
    Status,
    Attempts,
    NextAttemptAt,
    LastStatusCode,
    LastError,
    LastAttemptAt,
    /// Who is sending it now (a token per claim) and until when; NULL when nobody is.
    ClaimOwner,
    ClaimUntil,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .if_not_exists()
                    .col(pk_uuid(Webhooks::Uuid))
                    .col(string_len(Webhooks::TenantId, 255))
                    .col(text(Webhooks::Url))
                    .col(string_len(Webhooks::Secret, 128))
                    .col(text(Webhooks::Events))
                    .col(text_null(Webhooks::Description))
                    .col(boolean(Webhooks::Enabled))
                    .col(text_null(Webhooks::DisabledReason))
                    .col(integer(Webhooks::ConsecutiveFailures))
                    .col(big_integer(Webhooks::EventCursor))
                    .col(timestamp_with_time_zone(Webhooks::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // Listing and the per-tenant limit.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("ix_webhooks_tenant")
                    .table(Webhooks::Table)
                    .col(Webhooks::TenantId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .if_not_exists()
                    .col(pk_uuid(WebhookDeliveries::Uuid))
                    .col(uuid(WebhookDeliveries::WebhookUuid))
                    .col(big_integer(WebhookDeliveries::EventSeq))
                    .col(uuid(WebhookDeliveries::EventUuid))
                    .col(text(WebhookDeliveries::Payload))
                    .col(string_len(WebhookDeliveries::Status, 16))
                    .col(integer(WebhookDeliveries::Attempts))
                    .col(timestamp_with_time_zone(WebhookDeliveries::NextAttemptAt))
                    .col(integer_null(WebhookDeliveries::LastStatusCode))
                    .col(text_null(WebhookDeliveries::LastError))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::LastAttemptAt,
                    ))
                    .col(string_len_null(WebhookDeliveries::ClaimOwner, 255))
                    .col(timestamp_with_time_zone_null(WebhookDeliveries::ClaimUntil))
                    .col(timestamp_with_time_zone(WebhookDeliveries::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // One delivery per event per webhook, whatever happens to the cursor.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("ux_webhook_deliveries_event")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::WebhookUuid)
                    .col(WebhookDeliveries::EventSeq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Every gateway asks for the due ones every poll.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("ix_webhook_deliveries_due")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::Status)
                    .col(WebhookDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookDeliveries::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Webhooks::Table).to_owned())
            .await
    }
}
