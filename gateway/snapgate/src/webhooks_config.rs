//! `[webhooks]`: which targets the gateway calls, and how it retries (issue 12, point 5).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use snapgate_core::service::WebhookSettings;
use snapgate_core::webhook::{Cidr, TargetRules};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Call loopback addresses (127.0.0.0/8, ::1). Off: a tenant must not reach the
    /// gateway's own host.
    pub allow_loopback: bool,
    /// Call private addresses (RFC 1918, fc00::/7, CGNAT 100.64.0.0/10). Off by default.
    pub allow_private: bool,
    /// Ranges called whatever their class (`10.20.0.0/16`, `fd12::/16`): a receiver on an
    /// internal network, without opening all of it. Never the unspecified address or multicast.
    pub allowed_cidrs: Vec<String>,
    /// Webhooks one tenant may keep (409 `webhook_limit_exceeded` beyond).
    pub max_per_tenant: u64,
    /// One attempt's time limit.
    pub timeout_secs: f64,
    /// How long an attempt's claim lasts; then another gateway may send it again. More
    /// than `timeout_secs`.
    pub claim_secs: f64,
    /// First retry after this; doubled each attempt up to `retry_max_secs` (with jitter).
    pub retry_base_secs: f64,
    pub retry_max_secs: f64,
    /// Attempts of one delivery before it is `failed`.
    pub max_attempts: u32,
    /// Failed attempts in a row that disable a webhook.
    pub disable_after_failures: u32,
    /// Deliveries one gateway sends at once.
    pub max_in_flight: u64,
    /// How often each gateway looks for work when no new event woke it.
    pub poll_interval_secs: f64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        let d = WebhookSettings::default();
        Self {
            allow_loopback: false,
            allow_private: false,
            allowed_cidrs: Vec::new(),
            max_per_tenant: d.max_per_tenant,
            timeout_secs: d.timeout.as_secs_f64(),
            claim_secs: d.claim.as_secs_f64(),
            retry_base_secs: d.retry_base.as_secs_f64(),
            retry_max_secs: d.retry_max.as_secs_f64(),
            max_attempts: d.max_attempts,
            disable_after_failures: d.disable_after_failures,
            max_in_flight: d.batch,
            poll_interval_secs: d.poll_interval.as_secs_f64(),
        }
    }
}

fn positive(key: &'static str, v: f64) -> Result<(), (&'static str, String)> {
    if v > 0.0 && v.is_finite() && v < 1e9 {
        Ok(())
    } else {
        Err((key, "must be a positive number of seconds".into()))
    }
}

impl WebhooksConfig {
    /// The first invalid key and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for c in &self.allowed_cidrs {
            c.parse::<Cidr>()
                .map_err(|e| ("webhooks.allowed_cidrs", e))?;
        }
        positive("webhooks.timeout_secs", self.timeout_secs)?;
        positive("webhooks.claim_secs", self.claim_secs)?;
        positive("webhooks.retry_base_secs", self.retry_base_secs)?;
        positive("webhooks.retry_max_secs", self.retry_max_secs)?;
        positive("webhooks.poll_interval_secs", self.poll_interval_secs)?;
        if self.claim_secs <= self.timeout_secs {
            return Err((
                "webhooks.claim_secs",
                "must be more than webhooks.timeout_secs (a claim outlives its attempt)".into(),
            ));
        }
        for (key, v) in [
            ("webhooks.max_attempts", u64::from(self.max_attempts)),
            (
                "webhooks.disable_after_failures",
                u64::from(self.disable_after_failures),
            ),
            ("webhooks.max_in_flight", self.max_in_flight),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        Ok(())
    }

    pub fn settings(&self) -> WebhookSettings {
        WebhookSettings {
            targets: TargetRules {
                allow_loopback: self.allow_loopback,
                allow_private: self.allow_private,
                // Checked at load (`check`).
                allowed: self
                    .allowed_cidrs
                    .iter()
                    .filter_map(|c| c.parse().ok())
                    .collect(),
            },
            max_per_tenant: self.max_per_tenant,
            timeout: Duration::from_secs_f64(self.timeout_secs),
            claim: Duration::from_secs_f64(self.claim_secs),
            retry_base: Duration::from_secs_f64(self.retry_base_secs),
            retry_max: Duration::from_secs_f64(self.retry_max_secs),
            max_attempts: self.max_attempts,
            disable_after_failures: self.disable_after_failures,
            batch: self.max_in_flight,
            poll_interval: Duration::from_secs_f64(self.poll_interval_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_call_public_addresses_only() {
        let c = WebhooksConfig::default();
        assert_eq!(c.check(), Ok(()));
        let s = c.settings();
        assert!(!s.targets.allow_loopback && !s.targets.allow_private);
        assert!(s.targets.allowed.is_empty());
        assert_eq!(s.disable_after_failures, 10);
    }

    #[test]
    fn nonsense_is_refused_with_its_key() {
        let bad = |f: fn(&mut WebhooksConfig)| {
            let mut c = WebhooksConfig::default();
            f(&mut c);
            c.check().unwrap_err().0
        };
        assert_eq!(
            bad(|c| c.allowed_cidrs = vec!["10.0.0.0/40".into()]),
            "webhooks.allowed_cidrs"
        );
        assert_eq!(bad(|c| c.claim_secs = 1.0), "webhooks.claim_secs");
        assert_eq!(bad(|c| c.timeout_secs = 0.0), "webhooks.timeout_secs");
        assert_eq!(bad(|c| c.max_attempts = 0), "webhooks.max_attempts");
    }
}
