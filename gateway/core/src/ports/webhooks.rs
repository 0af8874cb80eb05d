//! Webhooks (issue 12, point 5): their rows ([`WebhookStore`], `snapgate-store`) and the HTTP
//! client that delivers them ([`WebhookTransport`], the binary's).

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::repository::RepoError;
use crate::webhook::{Webhook, WebhookDelivery};

/// A webhook with what only the gateway sees.
#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub webhook: Webhook,
    /// `whsec_…`: the HMAC key of its signatures.
    pub secret: String,
    /// The last event `seq` fanned out to it (the cursor).
    pub cursor: i64,
}

/// A delivery row made by the fan-out: one event for one webhook.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub uuid: Uuid,
    pub event_seq: i64,
    pub event_id: Uuid,
    /// The event's JSON, the body of every attempt (the same bytes each time, so the
    /// receiver's de-duplication and signature hold, and purging the log loses nothing).
    pub payload: String,
    pub due_at: DateTime<Utc>,
}

/// A delivery this gateway claimed for one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub uuid: Uuid,
    pub webhook: Uuid,
    pub event_id: Uuid,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// How one attempt went, to record under the claim that made it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery: Uuid,
    pub webhook: Uuid,
    /// The claim token the attempt was made under: a record of a claim that expired and was
    /// taken again by another gateway is refused.
    pub claim: String,
    pub at: DateTime<Utc>,
    pub delivered: bool,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// `None` with `delivered = false`: given up (`failed`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The webhook is disabled when this many attempts in a row have failed.
    pub disable_after: u32,
    pub disabled_reason: String,
}

/// What recording an attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Written; `disabled`: this failure disabled the webhook.
    Written { disabled: bool },
    /// The claim was no longer this attempt's (expired and taken, or the webhook deleted).
    ClaimLost,
}

#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Records a new webhook unless its tenant has `max_per_tenant` already (counted and
    /// inserted under one per-tenant lock). `false` when the limit refused it.
    async fn create_webhook(
        &self,
        record: &WebhookRecord,
        max_per_tenant: u64,
    ) -> Result<bool, RepoError>;

    async fn get_webhook(&self, id: Uuid) -> Result<Option<WebhookRecord>, RepoError>;

    /// One tenant's webhooks, or every tenant's, oldest first.
    async fn list_webhooks(&self, tenant: Option<&str>) -> Result<Vec<Webhook>, RepoError>;

    /// Deletes the webhook and its deliveries; `false` when there was nothing to delete.
    async fn delete_webhook(&self, id: Uuid) -> Result<bool, RepoError>;

    /// The webhook's newest deliveries first, at most `limit`.
    async fn recent_deliveries(
        &self,
        webhook: Uuid,
        limit: u64,
    ) -> Result<Vec<WebhookDelivery>, RepoError>;

    /// Every enabled webhook, with its cursor (the fan-out reads them each pass).
    async fn enabled_webhooks(&self) -> Result<Vec<WebhookRecord>, RepoError>;

    /// Inserts `deliveries` and moves the webhook's cursor from `from` to `to`, in one
    /// transaction, only while the cursor is still `from`: of several gateways fanning out
    /// the same events, exactly one does. `false` when the cursor had moved (nothing written).
    async fn fan_out(
        &self,
        webhook: Uuid,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
    ) -> Result<bool, RepoError>;

    /// Claims at most `limit` pending deliveries of enabled webhooks due at `now` and not
    /// claimed by anyone (or whose claim expired), until `until`, with the token `claim`. On
    /// PostgreSQL rows another gateway is claiming are skipped (`FOR UPDATE SKIP LOCKED`).
    async fn claim_deliveries(
        &self,
        claim: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<ClaimedDelivery>, RepoError>;

    /// Records an attempt's outcome on the delivery (under its claim, which it releases) and
    /// on the webhook (its count of failures in a row; disabled when it reaches
    /// `disable_after`), in one transaction.
    async fn record_attempt(&self, attempt: &AttemptRecord) -> Result<Recorded, RepoError>;

    /// Deletes at most `batch` finished deliveries (`delivered` or `failed`) whose last attempt
    /// was before `before`, oldest first; pending ones stay whatever their age.
    async fn purge_deliveries(&self, before: DateTime<Utc>, batch: u64) -> Result<u64, RepoError>;
}

/// A webhook target as the transport understands it.
#[derive(Debug, Clone)]
pub struct ResolvedTarget {
    /// Every address the host resolved to (one for an address literal).
    pub addrs: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Not an `http`/`https` URL with a host (or with credentials in it): the message says.
    Invalid(String),
    /// The host name does not resolve.
    Unresolvable(String),
}

/// How an attempt's request went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// The receiver answered with this status (redirects are not followed).
    Answered(u16),
    /// No answer: refused connection, timeout, TLS failure… (the text is for the tenant).
    Failed(String),
}

#[async_trait]
pub trait WebhookTransport: Send + Sync + 'static {
    /// Parses `url` and resolves its host.
    async fn resolve(&self, url: &str) -> Result<ResolvedTarget, TargetError>;

    /// POSTs `body` to `url`, connecting to `addr` only (never resolving the host again: the
    /// address checked is the one called), without following redirects, within `timeout`.
    async fn post(
        &self,
        url: &str,
        addr: IpAddr,
        headers: &[(&'static str, String)],
        body: String,
        timeout: Duration,
    ) -> PostOutcome;
}
