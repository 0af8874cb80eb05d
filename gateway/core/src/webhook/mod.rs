//! Webhooks (issue 12, point 5): a tenant's URL that receives its events, signed the way the
//! Standard Webhooks specification says, delivered at least once from the event log (an
//! outbox). The flows are `service/webhooks.rs` (the API) and `service/webhook_dispatch.rs`
//! (fan-out and delivery); the rows are `snapgate-store`'s; the HTTP client is the binary's
//! (port [`crate::ports::WebhookTransport`]).

mod sign;
mod targets;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::events::EventKind;
use crate::TenantId;

pub use sign::{new_secret, secret_key, signature};
pub use targets::{AddressClass, Cidr, TargetRules};

/// A webhook as the API shows it: never its secret (returned once, by the creation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub uuid: Uuid,
    pub tenant_id: TenantId,
    pub url: String,
    /// The kinds delivered; empty: every kind.
    pub events: Vec<EventKind>,
    pub description: Option<String>,
    /// `false` once `webhooks.disable_after_failures` attempts in a row failed.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Failed attempts since the last delivered one.
    pub consecutive_failures: u32,
    pub created_at: DateTime<Utc>,
}

/// Where one event stands for one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet: its next attempt is due at `next_attempt_at`.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Given up after `webhooks.max_attempts` attempts.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "failed" => Ok(DeliveryStatus::Failed),
            other => Err(format!("unknown delivery status {other:?}")),
        }
    }
}

/// One event's delivery to one webhook, with its last attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    pub uuid: Uuid,
    /// The event's id: the `webhook-id` header, the same on every attempt (receivers
    /// de-duplicate on it).
    pub event_id: Uuid,
    pub event_seq: i64,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When the next attempt is due (while `pending`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last attempt, when the receiver answered.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed (no answer, a refused target, a non-2xx status).
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}
