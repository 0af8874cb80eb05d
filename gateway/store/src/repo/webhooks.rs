//! [`WebhookStore`] on sea-orm: webhooks, the fan-out of events into deliveries, claims and
//! attempts (issue 12, point 5).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, LockBehavior, LockType, Order, Query};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use snapgate_core::events::EventKind;
use snapgate_core::ports::{
    AttemptRecord, ClaimedDelivery, NewDelivery, Recorded, RepoError, WebhookRecord, WebhookStore,
};
use snapgate_core::webhook::{DeliveryStatus, Webhook, WebhookDelivery};
use uuid::Uuid;

use super::{end_transaction, SeaRepository};
use crate::connect::Backend;
use crate::convert::micros;
use crate::entity::{webhook_deliveries, webhooks};
use crate::errors::db_error;

use webhook_deliveries::Column as D;
use webhooks::Column as W;

/// Rows per INSERT of the fan-out (well under either backend's limit of bound values).
const INSERT_CHUNK: usize = 200;

fn corrupt(what: impl std::fmt::Display) -> RepoError {
    RepoError::Other(format!("corrupt row: {what}"))
}

fn row(r: &WebhookRecord) -> Result<webhooks::ActiveModel, RepoError> {
    let w = &r.webhook;
    Ok(webhooks::ActiveModel {
        uuid: Set(w.uuid),
        tenant_id: Set(w.tenant_id.clone()),
        url: Set(w.url.clone()),
        secret: Set(r.secret.clone()),
        events: Set(serde_json::to_string(&w.events).map_err(|e| RepoError::Other(e.to_string()))?),
        description: Set(w.description.clone()),
        enabled: Set(w.enabled),
        disabled_reason: Set(w.disabled_reason.clone()),
        consecutive_failures: Set(i32::try_from(w.consecutive_failures).unwrap_or(i32::MAX)),
        event_cursor: Set(r.cursor),
        created_at: Set(micros(w.created_at)),
    })
}

fn from_row(m: webhooks::Model) -> Result<WebhookRecord, RepoError> {
    let events: Vec<EventKind> = serde_json::from_str(&m.events).map_err(corrupt)?;
    Ok(WebhookRecord {
        webhook: Webhook {
            uuid: m.uuid,
            tenant_id: m.tenant_id,
            url: m.url,
            events,
            description: m.description,
            enabled: m.enabled,
            disabled_reason: m.disabled_reason,
            consecutive_failures: u32::try_from(m.consecutive_failures).unwrap_or(0),
            created_at: m.created_at,
        },
        secret: m.secret,
        cursor: m.event_cursor,
    })
}

fn delivery_from_row(m: webhook_deliveries::Model) -> Result<WebhookDelivery, RepoError> {
    let status: DeliveryStatus = m.status.parse().map_err(corrupt)?;
    Ok(WebhookDelivery {
        uuid: m.uuid,
        event_id: m.event_uuid,
        event_seq: m.event_seq,
        status,
        attempts: u32::try_from(m.attempts).unwrap_or(0),
        next_attempt_at: (status == DeliveryStatus::Pending).then_some(m.next_attempt_at),
        last_attempt_at: m.last_attempt_at,
        last_status_code: m.last_status_code.and_then(|c| u16::try_from(c).ok()),
        last_error: m.last_error,
        created_at: m.created_at,
    })
}

fn delivery_row(webhook: Uuid, d: &NewDelivery) -> webhook_deliveries::ActiveModel {
    webhook_deliveries::ActiveModel {
        uuid: Set(d.uuid),
        webhook_uuid: Set(webhook),
        event_seq: Set(d.event_seq),
        event_uuid: Set(d.event_id),
        payload: Set(d.payload.clone()),
        status: Set(DeliveryStatus::Pending.as_str().to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(micros(d.due_at)),
        last_status_code: Set(None),
        last_error: Set(None),
        last_attempt_at: Set(None),
        claim_owner: Set(None),
        claim_until: Set(None),
        created_at: Set(micros(d.due_at)),
    }
}

async fn enabled_ids(db: &impl ConnectionTrait) -> Result<Vec<Uuid>, RepoError> {
    webhooks::Entity::find()
        .select_only()
        .column(W::Uuid)
        .filter(W::Enabled.eq(true))
        .into_tuple()
        .all(db)
        .await
        .map_err(db_error)
}

#[async_trait]
impl WebhookStore for SeaRepository {
    async fn create_webhook(
        &self,
        record: &WebhookRecord,
        max_per_tenant: u64,
    ) -> Result<bool, RepoError> {
        let model = row(record)?;
        let tenant = record.webhook.tenant_id.as_str();
        let _gate = self.write_gate().await;
        let txn = self.db.begin().await.map_err(db_error)?;
        let result = async {
            super::lock_tenant_creations(self, &txn, "webhooks", tenant).await?;
            let count = webhooks::Entity::find()
                .filter(W::TenantId.eq(tenant))
                .count(&txn)
                .await
                .map_err(db_error)?;
            if count >= max_per_tenant {
                return Ok(false);
            }
            webhooks::Entity::insert(model)
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
            Ok(true)
        }
        .await;
        end_transaction(txn, result).await
    }

    async fn get_webhook(&self, id: Uuid) -> Result<Option<WebhookRecord>, RepoError> {
        webhooks::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(db_error)?
            .map(from_row)
            .transpose()
    }

    async fn list_webhooks(&self, tenant: Option<&str>) -> Result<Vec<Webhook>, RepoError> {
        let mut query = webhooks::Entity::find();
        if let Some(t) = tenant {
            query = query.filter(W::TenantId.eq(t));
        }
        query
            .order_by_asc(W::CreatedAt)
            .order_by_asc(W::Uuid)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|m| from_row(m).map(|r| r.webhook))
            .collect()
    }

    async fn delete_webhook(&self, id: Uuid) -> Result<bool, RepoError> {
        let _gate = self.write_gate().await;
        let txn = self.db.begin().await.map_err(db_error)?;
        let result = async {
            webhook_deliveries::Entity::delete_many()
                .filter(D::WebhookUuid.eq(id))
                .exec(&txn)
                .await
                .map_err(db_error)?;
            let deleted = webhooks::Entity::delete_by_id(id)
                .exec(&txn)
                .await
                .map_err(db_error)?
                .rows_affected;
            Ok(deleted > 0)
        }
        .await;
        end_transaction(txn, result).await
    }

    async fn recent_deliveries(
        &self,
        webhook: Uuid,
        limit: u64,
    ) -> Result<Vec<WebhookDelivery>, RepoError> {
        webhook_deliveries::Entity::find()
            .filter(D::WebhookUuid.eq(webhook))
            .order_by_desc(D::EventSeq)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(delivery_from_row)
            .collect()
    }

    async fn enabled_webhooks(&self) -> Result<Vec<WebhookRecord>, RepoError> {
        webhooks::Entity::find()
            .filter(W::Enabled.eq(true))
            .order_by_asc(W::Uuid)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn fan_out(
        &self,
        webhook: Uuid,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
    ) -> Result<bool, RepoError> {
        let _gate = self.write_gate().await;
        let txn = self.db.begin().await.map_err(db_error)?;
        let result = async {
            // On PostgreSQL a second gateway's update waits for the first's commit, then
            // finds the cursor moved and matches nothing.
            let moved = webhooks::Entity::update_many()
                .col_expr(W::EventCursor, Expr::value(to))
                .filter(W::Uuid.eq(webhook))
                .filter(W::EventCursor.eq(from))
                .exec(&txn)
                .await
                .map_err(db_error)?
                .rows_affected;
            if moved != 1 {
                return Ok(false);
            }
            for chunk in deliveries.chunks(INSERT_CHUNK) {
                webhook_deliveries::Entity::insert_many(
                    chunk.iter().map(|d| delivery_row(webhook, d)),
                )
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
            }
            Ok(true)
        }
        .await;
        end_transaction(txn, result).await
    }

    async fn claim_deliveries(
        &self,
        claim: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<ClaimedDelivery>, RepoError> {
        let now = micros(now);
        // Every gateway asks every poll: without an enabled webhook, no transaction and no
        // write gate.
        if enabled_ids(&self.db).await?.is_empty() {
            return Ok(Vec::new());
        }
        let _gate = self.write_gate().await;
        let txn = self.db.begin().await.map_err(db_error)?;
        let result = async {
            // Read again in the transaction: a webhook disabled meanwhile gets no attempt more.
            let enabled = enabled_ids(&txn).await?;
            if enabled.is_empty() {
                return Ok(Vec::new());
            }
            let mut query = webhook_deliveries::Entity::find()
                .filter(D::Status.eq(DeliveryStatus::Pending.as_str()))
                .filter(D::NextAttemptAt.lte(now))
                .filter(
                    Condition::any()
                        .add(D::ClaimUntil.is_null())
                        .add(D::ClaimUntil.lt(now)),
                )
                .filter(D::WebhookUuid.is_in(enabled))
                .order_by_asc(D::NextAttemptAt)
                .order_by_asc(D::EventSeq)
                .limit(limit);
            if self.backend == Backend::Postgres {
                // Rows another gateway is claiming right now are left to it.
                query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
            }
            let rows = query.all(&txn).await.map_err(db_error)?;
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            webhook_deliveries::Entity::update_many()
                .col_expr(D::ClaimOwner, Expr::value(Some(claim.to_owned())))
                .col_expr(D::ClaimUntil, Expr::value(Some(micros(until))))
                .filter(D::Uuid.is_in(rows.iter().map(|r| r.uuid)))
                .exec(&txn)
                .await
                .map_err(db_error)?;
            Ok(rows
                .into_iter()
                .map(|r| ClaimedDelivery {
                    uuid: r.uuid,
                    webhook: r.webhook_uuid,
                    event_id: r.event_uuid,
                    payload: r.payload,
                    attempts: u32::try_from(r.attempts).unwrap_or(0),
                })
                .collect())
        }
        .await;
        end_transaction(txn, result).await
    }

    async fn record_attempt(&self, a: &AttemptRecord) -> Result<Recorded, RepoError> {
        let status = match (a.delivered, a.next_attempt_at) {
            (true, _) => DeliveryStatus::Delivered,
            (false, Some(_)) => DeliveryStatus::Pending,
            (false, None) => DeliveryStatus::Failed,
        };
        let _gate = self.write_gate().await;
        let txn = self.db.begin().await.map_err(db_error)?;
        let result = async {
            let written = webhook_deliveries::Entity::update_many()
                .col_expr(D::Status, Expr::value(status.as_str()))
                .col_expr(D::Attempts, Expr::col(D::Attempts).add(1))
                .col_expr(
                    D::NextAttemptAt,
                    Expr::value(micros(a.next_attempt_at.unwrap_or(a.at))),
                )
                .col_expr(D::LastAttemptAt, Expr::value(Some(micros(a.at))))
                .col_expr(D::LastStatusCode, Expr::value(a.status_code.map(i32::from)))
                .col_expr(D::LastError, Expr::value(a.error.clone()))
                .col_expr(D::ClaimOwner, Expr::value(None::<String>))
                .col_expr(D::ClaimUntil, Expr::value(None::<DateTime<Utc>>))
                .filter(D::Uuid.eq(a.delivery))
                .filter(D::ClaimOwner.eq(a.claim.as_str()))
                .exec(&txn)
                .await
                .map_err(db_error)?
                .rows_affected;
            if written == 0 {
                return Ok(Recorded::ClaimLost);
            }
            if a.delivered {
                webhooks::Entity::update_many()
                    .col_expr(W::ConsecutiveFailures, Expr::value(0))
                    .filter(W::Uuid.eq(a.webhook))
                    .exec(&txn)
                    .await
                    .map_err(db_error)?;
                return Ok(Recorded::Written { disabled: false });
            }
            webhooks::Entity::update_many()
                .col_expr(
                    W::ConsecutiveFailures,
                    Expr::col(W::ConsecutiveFailures).add(1),
                )
                .filter(W::Uuid.eq(a.webhook))
                .exec(&txn)
                .await
                .map_err(db_error)?;
            let disabled = webhooks::Entity::update_many()
                .col_expr(W::Enabled, Expr::value(false))
                .col_expr(
                    W::DisabledReason,
                    Expr::value(Some(a.disabled_reason.clone())),
                )
                .filter(W::Uuid.eq(a.webhook))
                .filter(W::Enabled.eq(true))
                .filter(W::ConsecutiveFailures.gte(i64::from(a.disable_after)))
                .exec(&txn)
                .await
                .map_err(db_error)?
                .rows_affected;
            Ok(Recorded::Written {
                disabled: disabled > 0,
            })
        }
        .await;
        end_transaction(txn, result).await
    }

    async fn purge_deliveries(&self, before: DateTime<Utc>, batch: u64) -> Result<u64, RepoError> {
        let oldest = Query::select()
            .column(D::Uuid)
            .from(webhook_deliveries::Entity)
            .and_where(D::Status.ne(DeliveryStatus::Pending.as_str()))
            .and_where(D::LastAttemptAt.lt(micros(before)))
            .order_by(D::LastAttemptAt, Order::Asc)
            .limit(batch)
            .to_owned();
        let _gate = self.write_gate().await;
        let deleted = webhook_deliveries::Entity::delete_many()
            .filter(D::Uuid.in_subquery(oldest))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(deleted.rows_affected)
    }
}
