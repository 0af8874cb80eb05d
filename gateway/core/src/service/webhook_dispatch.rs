//! Webhooks (issue 12, point 5), the sending side. Every gateway runs one dispatcher:
//!
//! - **Fan-out** (the outbox): for each enabled webhook, the events of its tenant and kinds
//!   numbered after its cursor become delivery rows, and the cursor moves past them, in one
//!   transaction conditional on the cursor being the one read ([`WebhookStore::fan_out`]).
//!   However many gateways do this at once, each event becomes one delivery per webhook. The
//!   event log is numbered densely and never behind a reader (the sequencer's promise), so a
//!   cursor that moved past `seq = k` can never miss an event numbered later.
//! - **Delivery**: due rows are claimed for `webhooks.claim_secs` with a token of this
//!   gateway's ([`WebhookStore::claim_deliveries`]: `FOR UPDATE SKIP LOCKED` on PostgreSQL,
//!   SQLite has one writer), each is sent once — its target checked again, the request sent to
//!   the address checked — and the outcome recorded under the claim. A gateway killed during
//!   an attempt leaves its claim to expire; then any gateway sends it again: deliveries are
//!   *at least once*, and receivers de-duplicate on `webhook-id` (the event's id).
//! - **Retries** back off exponentially (`retry_base_secs` doubling up to `retry_max_secs`,
//!   each delay drawn in its upper half: jitter, so a receiver coming back is not hit by every
//!   retry at once); a delivery is `failed` after `max_attempts`; a webhook whose attempts
//!   failed `disable_after_failures` times in a row is disabled with the reason.

use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use tokio::sync::{watch, Semaphore};
use uuid::Uuid;

use super::Service;
use crate::events::EventFilter;
use crate::ports::{
    AttemptRecord, ClaimedDelivery, NewDelivery, PostOutcome, Recorded, TargetError, WebhookRecord,
};
use crate::webhook::{secret_key, signature};
use crate::ServiceError;

/// Events one webhook takes from the log per fan-out (more wait for the next pass).
const FAN_OUT_BATCH: u64 = 500;

/// Finished deliveries are purged this often, `DELIVERY_PURGE_BATCH` per statement, once their
/// last attempt is older than the event log's retention (`events.retention_hours`).
const DELIVERY_PURGE_EVERY: Duration = Duration::from_secs(60);
const DELIVERY_PURGE_BATCH: u64 = 1000;

/// The delay before attempt `attempt + 1`, after `attempt` failed ones: `base · 2^(attempt-1)`
/// capped at `max`, drawn uniformly in its upper half.
pub fn retry_delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base
        .checked_mul(1u32 << attempt.saturating_sub(1).min(30))
        .unwrap_or(max)
        .min(max);
    let half = exp / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// How one attempt went, before it is recorded.
struct Attempt {
    delivered: bool,
    status_code: Option<u16>,
    error: Option<String>,
}

impl Attempt {
    fn failed(error: String) -> Self {
        Attempt {
            delivered: false,
            status_code: None,
            error: Some(error),
        }
    }
}

impl Service {
    /// Fans out and delivers until aborted: woken by `events` (the highest numbered `seq`,
    /// from the event bus) and every `webhooks.poll_interval_secs` (retries that came due, and
    /// the fallback when a wake-up was missed).
    pub fn spawn_webhook_dispatcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        let mut events: Option<watch::Receiver<i64>> = Some(self.bus.subscribe());
        let in_flight = Arc::new(Semaphore::new(
            usize::try_from(self.settings.webhooks.batch).unwrap_or(usize::MAX),
        ));
        tokio::spawn(async move {
            let mut last_purge: Option<tokio::time::Instant> = None;
            loop {
                if last_purge.is_none_or(|t| t.elapsed() >= DELIVERY_PURGE_EVERY) {
                    last_purge = Some(tokio::time::Instant::now());
                    service.purge_finished_deliveries().await;
                }
                if let Err(e) = service.fan_out_webhooks().await {
                    tracing::warn!(error = %e, "webhook fan-out failed");
                }
                if let Err(e) = service.start_due_deliveries(&in_flight).await {
                    tracing::warn!(error = %e, "claiming webhook deliveries failed");
                }
                let pause = tokio::time::sleep(service.settings.webhooks.poll_interval);
                match events.as_mut() {
                    Some(rx) => {
                        tokio::select! {
                            _ = pause => {}
                            changed = rx.changed() => {
                                if changed.is_err() {
                                    events = None;
                                }
                            }
                        }
                    }
                    None => pause.await,
                }
            }
        })
    }

    /// Deletes finished deliveries older than the event log's retention, a batch at a time
    /// (at most 20 batches per call).
    async fn purge_finished_deliveries(&self) {
        let before = Utc::now()
            - chrono::Duration::from_std(self.settings.event_retention).unwrap_or_default();
        for _ in 0..20 {
            match self
                .webhooks
                .purge_deliveries(before, DELIVERY_PURGE_BATCH)
                .await
            {
                Ok(n) if n == DELIVERY_PURGE_BATCH => continue,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "purging old webhook deliveries failed");
                    return;
                }
            }
        }
    }

    /// One fan-out pass over every enabled webhook; returns the deliveries this gateway made.
    pub async fn fan_out_webhooks(&self) -> Result<usize, ServiceError> {
        let hooks = self.webhooks.enabled_webhooks().await?;
        if hooks.is_empty() {
            return Ok(0);
        }
        // Read before the events: every event up to `max` is numbered and visible, so a
        // short batch means the webhook has seen all of them, matching or not.
        let max = self.bus.log().last_event_seq().await?;
        let mut made = 0;
        for hook in hooks {
            if hook.cursor >= max {
                continue;
            }
            let filter = EventFilter {
                tenant: Some(hook.webhook.tenant_id.clone()),
                kinds: hook.webhook.events.clone(),
                instance: None,
            };
            let events = self
                .bus
                .log()
                .events_after(hook.cursor, &filter, FAN_OUT_BATCH)
                .await?;
            let last = events.last().map_or(0, |e| e.seq);
            let to = if events.len() as u64 >= FAN_OUT_BATCH {
                last
            } else {
                max.max(last)
            };
            let now = Utc::now().trunc_subsecs(6);
            let mut deliveries = Vec::with_capacity(events.len());
            for e in &events {
                deliveries.push(NewDelivery {
                    uuid: Uuid::now_v7(),
                    event_seq: e.seq,
                    event_id: e.id,
                    payload: serde_json::to_string(e).map_err(|e| {
                        tracing::error!(error = %e, "cannot encode an event");
                        ServiceError::Internal
                    })?,
                    due_at: now,
                });
            }
            if self
                .webhooks
                .fan_out(hook.webhook.uuid, hook.cursor, to, &deliveries)
                .await?
            {
                made += deliveries.len();
            }
        }
        Ok(made)
    }

    /// Claims as many due deliveries as `in_flight` has room for and sends each in a task of
    /// its own; returns how many it started.
    async fn start_due_deliveries(
        self: &Arc<Self>,
        in_flight: &Arc<Semaphore>,
    ) -> Result<usize, ServiceError> {
        let room = in_flight.available_permits();
        if room == 0 {
            return Ok(0);
        }
        let settings = &self.settings.webhooks;
        let claim = format!("{} {}", self.settings.gateway_id, Uuid::new_v4());
        let now = Utc::now().trunc_subsecs(6);
        let until = now + chrono::Duration::from_std(settings.claim).unwrap_or_default();
        let claimed = self
            .webhooks
            .claim_deliveries(&claim, now, until, room as u64)
            .await?;
        let started = claimed.len();
        for delivery in claimed {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let service = self.clone();
            let claim = claim.clone();
            tokio::spawn(async move {
                service.attempt_delivery(delivery, &claim).await;
                drop(permit);
            });
        }
        Ok(started)
    }

    async fn attempt_delivery(&self, delivery: ClaimedDelivery, claim: &str) {
        let settings = &self.settings.webhooks;
        let hook = match self.webhooks.get_webhook(delivery.webhook).await {
            Ok(Some(hook)) => hook,
            // Deleted meanwhile: its deliveries went with it.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading a webhook failed; its claim will expire");
                return;
            }
        };
        // The attempt (resolution included) ends while its claim holds, so no other gateway
        // sends it meanwhile unless this one died.
        let attempt = match tokio::time::timeout(
            settings.claim.mul_f64(0.9),
            self.send_once(&hook, &delivery),
        )
        .await
        {
            Ok(attempt) => attempt,
            Err(_) => Attempt::failed("no answer before the attempt's claim ran out".into()),
        };
        let attempts = delivery.attempts + 1;
        let at = Utc::now().trunc_subsecs(6);
        let next_attempt_at = (!attempt.delivered && attempts < settings.max_attempts).then(|| {
            let delay = retry_delay(settings.retry_base, settings.retry_max, attempts);
            at + chrono::Duration::from_std(delay).unwrap_or_default()
        });
        let outcome = match (attempt.delivered, next_attempt_at) {
            (true, _) => "delivered",
            (false, Some(_)) => "retried",
            (false, None) => "failed",
        };
        tracing::info!(
            webhook = %hook.webhook.uuid, event = %delivery.event_id, attempts,
            status = ?attempt.status_code, error = ?attempt.error, outcome,
            "webhook attempt"
        );
        let record = AttemptRecord {
            delivery: delivery.uuid,
            webhook: hook.webhook.uuid,
            claim: claim.to_owned(),
            at,
            delivered: attempt.delivered,
            status_code: attempt.status_code,
            error: attempt.error.clone(),
            next_attempt_at,
            disable_after: settings.disable_after_failures,
            disabled_reason: format!(
                "disabled after {} failed attempts in a row; the last: {}",
                settings.disable_after_failures,
                attempt.error.as_deref().unwrap_or("failed")
            ),
        };
        match self.webhooks.record_attempt(&record).await {
            Ok(Recorded::Written { disabled }) => {
                metrics::counter!("snapgate_webhook_deliveries_total", "outcome" => outcome)
                    .increment(1);
                if disabled {
                    metrics::counter!("snapgate_webhooks_disabled_total").increment(1);
                    tracing::warn!(webhook = %hook.webhook.uuid, tenant = %hook.webhook.tenant_id,
                        reason = %record.disabled_reason, "webhook disabled");
                }
            }
            Ok(Recorded::ClaimLost) => {
                metrics::counter!("snapgate_webhook_deliveries_total", "outcome" => "claim_lost")
                    .increment(1);
                tracing::info!(delivery = %delivery.uuid, "the claim expired during the attempt; another gateway has the delivery");
            }
            Err(e) => {
                tracing::warn!(error = %e, delivery = %delivery.uuid, "recording a webhook attempt failed; its claim will expire and it is sent again");
            }
        }
    }

    /// One attempt: the target checked again (its DNS may have changed since the creation),
    /// signed, POSTed to the address checked.
    async fn send_once(&self, hook: &WebhookRecord, delivery: &ClaimedDelivery) -> Attempt {
        let settings = &self.settings.webhooks;
        let addrs = match self.webhook_transport.resolve(&hook.webhook.url).await {
            Ok(target) => target.addrs,
            Err(TargetError::Invalid(m) | TargetError::Unresolvable(m)) => {
                return Attempt::failed(m)
            }
        };
        if let Err(class) = settings.targets.check_all(&addrs) {
            return Attempt::failed(format!(
                "the webhook's host resolves to a {} address, which this gateway does not call",
                class.as_str()
            ));
        }
        let Some(key) = secret_key(&hook.secret) else {
            tracing::error!(webhook = %hook.webhook.uuid, "the webhook's secret is malformed");
            return Attempt::failed("the webhook's secret is malformed".into());
        };
        let id = delivery.event_id.to_string();
        let timestamp = Utc::now().timestamp();
        let headers = [
            ("webhook-id", id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                signature(&key, &id, timestamp, delivery.payload.as_bytes()),
            ),
        ];
        match self
            .webhook_transport
            .post(
                &hook.webhook.url,
                addrs[0],
                &headers,
                delivery.payload.clone(),
                settings.timeout,
            )
            .await
        {
            PostOutcome::Answered(status) if (200..300).contains(&status) => Attempt {
                delivered: true,
                status_code: Some(status),
                error: None,
            },
            PostOutcome::Answered(status) => Attempt {
                delivered: false,
                status_code: Some(status),
                error: Some(format!("the receiver answered HTTP {status}")),
            },
            PostOutcome::Failed(message) => Attempt::failed(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_within_jitter_up_to_the_cap() {
        let base = Duration::from_secs(4);
        let max = Duration::from_secs(60);
        for (attempt, full) in [(1, 4), (2, 8), (3, 16), (4, 32), (5, 60), (40, 60)] {
            let full = Duration::from_secs(full);
            for _ in 0..50 {
                let d = retry_delay(base, max, attempt);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
    }
}
