//! Webhooks (issue 12, point 5), the API's side: create, list, show, delete. Tenants are walls
//! (another tenant's webhook is 404 and never listed); the operator may name a tenant. The
//! target is checked against the operator's rules at creation ([`TargetRules`]) and again
//! before every attempt (`webhook_dispatch.rs`).

use std::time::Duration;

use chrono::{SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::require;
use super::{validate, Service};
use crate::auth::{Caller, Role};
use crate::events::EventKind;
use crate::ports::{TargetError, WebhookRecord};
use crate::webhook::{new_secret, TargetRules, Webhook, WebhookDelivery};
use crate::ServiceError;

/// The longest URL taken.
pub const MAX_WEBHOOK_URL: usize = 2048;
/// Deliveries `GET /v1/webhooks/{id}` shows.
pub const RECENT_DELIVERIES: u64 = 20;

/// `[webhooks]`.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Which addresses may be called (default: public ones only).
    pub targets: TargetRules,
    /// Webhooks one tenant may keep (409 `webhook_limit_exceeded` beyond).
    pub max_per_tenant: u64,
    /// One attempt's time limit (connection, request and answer).
    pub timeout: Duration,
    /// How long a claimed delivery is this gateway's; then another gateway may send it
    /// again (a gateway killed mid-attempt). Longer than `timeout`.
    pub claim: Duration,
    /// The first retry's delay; doubled each attempt up to `retry_max`, with jitter.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Attempts of one delivery before it is `failed`.
    pub max_attempts: u32,
    /// Failed attempts in a row that disable the webhook.
    pub disable_after_failures: u32,
    /// Deliveries one gateway has in flight at most.
    pub batch: u64,
    /// How often each gateway looks for events to fan out and deliveries due, when no new
    /// event woke it.
    pub poll_interval: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            targets: TargetRules::default(),
            max_per_tenant: 20,
            timeout: Duration::from_secs(10),
            claim: Duration::from_secs(60),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(3600),
            max_attempts: 15,
            disable_after_failures: 10,
            batch: 32,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// A new webhook, as the client sent it.
#[derive(Debug, Clone)]
pub struct WebhookInput {
    pub url: String,
    /// `None` or empty: every kind.
    pub events: Option<Vec<EventKind>>,
    pub description: Option<String>,
}

/// The answer to a creation: the webhook and its secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_<base64>`: the HMAC-SHA256 key is the base64 part, decoded. Never shown again.
    pub secret: String,
}

/// A webhook with its newest deliveries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookDetail {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The newest first (at most 20): each event's status, attempts and last attempt.
    pub deliveries: Vec<WebhookDelivery>,
}

/// The tenant a webhook call acts in: the caller's own, or for the operator the one named.
/// Another tenant named by a tenant-scoped caller is a 404, as everywhere.
fn target_tenant(caller: &Caller, requested: Option<String>) -> Result<String, ServiceError> {
    match requested {
        Some(t) => {
            validate::tenant_id(&t)?;
            if caller.can_see(&t) {
                Ok(t)
            } else {
                Err(ServiceError::not_found("tenant", t))
            }
        }
        None => Ok(caller.tenant.clone()),
    }
}

impl Service {
    /// Checks a target against the operator's rules: every address its host resolves to.
    pub(super) async fn check_webhook_target(
        &self,
        url: &str,
    ) -> Result<Vec<std::net::IpAddr>, ServiceError> {
        let target = self
            .webhook_transport
            .resolve(url)
            .await
            .map_err(|e| match e {
                TargetError::Invalid(message) => {
                    ServiceError::bad_request("invalid_webhook_url", message)
                }
                TargetError::Unresolvable(message) => ServiceError::Unsupported {
                    code: "webhook_target_unresolvable",
                    message,
                },
            })?;
        self.settings
            .webhooks
            .targets
            .check_all(&target.addrs)
            .map_err(|class| ServiceError::Unsupported {
                code: "webhook_target_refused",
                message: format!(
                    "the webhook's host resolves to a {} address, which this gateway does not call",
                    class.as_str()
                ),
            })?;
        Ok(target.addrs)
    }

    /// Creates a webhook of the caller's tenant (the operator: of `tenant`). Tenant admins.
    pub async fn create_webhook(
        &self,
        caller: &Caller,
        tenant: Option<String>,
        input: WebhookInput,
    ) -> Result<CreatedWebhook, ServiceError> {
        let tenant = target_tenant(caller, tenant)?;
        require(caller, Role::Admin)?;
        if input.url.len() > MAX_WEBHOOK_URL {
            return Err(ServiceError::bad_request(
                "invalid_webhook_url",
                format!("a webhook URL is at most {MAX_WEBHOOK_URL} bytes"),
            ));
        }
        let description = input
            .description
            .as_deref()
            .map(validate::description)
            .transpose()?;
        self.check_webhook_target(&input.url).await?;
        let mut events = input.events.unwrap_or_default();
        events.sort_by_key(|k| k.as_str());
        events.dedup();
        let webhook = Webhook {
            uuid: Uuid::now_v7(),
            tenant_id: tenant,
            url: input.url,
            events,
            description,
            enabled: true,
            disabled_reason: None,
            consecutive_failures: 0,
            created_at: Utc::now().trunc_subsecs(6),
        };
        // Events from now on: those numbered before the webhook existed are not sent.
        let cursor = self.bus.log().last_event_seq().await?;
        let record = WebhookRecord {
            webhook: webhook.clone(),
            secret: new_secret(),
            cursor,
        };
        let limit = self.settings.webhooks.max_per_tenant;
        if !self.webhooks.create_webhook(&record, limit).await? {
            return Err(ServiceError::WebhookLimitExceeded { limit });
        }
        tracing::info!(webhook = %webhook.uuid, tenant = %webhook.tenant_id, "webhook created");
        Ok(CreatedWebhook {
            webhook,
            secret: record.secret,
        })
    }

    /// The caller's tenant's webhooks; the operator's: every tenant's, or `tenant`'s.
    pub async fn list_webhooks(
        &self,
        caller: &Caller,
        tenant: Option<String>,
    ) -> Result<Vec<Webhook>, ServiceError> {
        require(caller, Role::Reader)?;
        let tenant = match tenant {
            None if caller.is_operator() => None,
            requested => Some(target_tenant(caller, requested)?),
        };
        Ok(self.webhooks.list_webhooks(tenant.as_deref()).await?)
    }

    pub async fn get_webhook(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<WebhookDetail, ServiceError> {
        require(caller, Role::Reader)?;
        let webhook = self.visible_webhook(caller, id).await?;
        let deliveries = self
            .webhooks
            .recent_deliveries(id, RECENT_DELIVERIES)
            .await?;
        Ok(WebhookDetail {
            webhook,
            deliveries,
        })
    }

    /// Deletes a webhook and its deliveries (pending ones are not sent).
    pub async fn delete_webhook(&self, caller: &Caller, id: Uuid) -> Result<(), ServiceError> {
        self.visible_webhook(caller, id).await?;
        require(caller, Role::Admin)?;
        if !self.webhooks.delete_webhook(id).await? {
            return Err(ServiceError::not_found("webhook", id));
        }
        tracing::info!(webhook = %id, "webhook deleted");
        Ok(())
    }

    async fn visible_webhook(&self, caller: &Caller, id: Uuid) -> Result<Webhook, ServiceError> {
        match self.webhooks.get_webhook(id).await? {
            Some(r) if caller.can_see(&r.webhook.tenant_id) => Ok(r.webhook),
            _ => Err(ServiceError::not_found("webhook", id)),
        }
    }
}
