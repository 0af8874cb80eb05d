//! `[lifecycle]`: expiry and schedules (issue 12). Its own file so the section reads whole.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use snapgate_core::service::LifecycleSettings;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Expired states one maintenance pass (`snapshots.maintenance_interval_secs`) starts
    /// deleting; the rest wait for the next pass.
    pub expiry_batch: u64,
    /// How far in the future an `expires_at` may be set, in days.
    pub max_expiry_days: u64,
    /// Schedules one tenant may keep; more are refused (403 `schedule_limit_exceeded`).
    pub max_schedules_per_tenant: u64,
    /// How often each gateway looks for due schedules.
    pub schedule_check_interval_secs: f64,
    /// Due schedules one gateway takes per look.
    pub schedule_batch: u64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        let d = LifecycleSettings::default();
        Self {
            expiry_batch: d.expiry_batch,
            max_expiry_days: d.max_expiry.as_secs() / 86_400,
            max_schedules_per_tenant: d.max_schedules_per_tenant,
            schedule_check_interval_secs: 5.0,
            schedule_batch: d.schedule_batch,
        }
    }
}

impl LifecycleConfig {
    /// The first invalid key and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let at_least_one = |key, v: u64| {
            if v == 0 {
                Err((key, "must be at least 1".to_owned()))
            } else {
                Ok(())
            }
        };
        at_least_one("lifecycle.expiry_batch", self.expiry_batch)?;
        at_least_one("lifecycle.max_expiry_days", self.max_expiry_days)?;
        at_least_one("lifecycle.schedule_batch", self.schedule_batch)?;
        if self.max_expiry_days > 100 * 366 {
            return Err(("lifecycle.max_expiry_days", "must be at most 36600".into()));
        }
        if !(self.schedule_check_interval_secs > 0.0
            && self.schedule_check_interval_secs.is_finite())
        {
            return Err((
                "lifecycle.schedule_check_interval_secs",
                "must be positive".into(),
            ));
        }
        Ok(())
    }

    pub fn settings(&self) -> LifecycleSettings {
        LifecycleSettings {
            expiry_batch: self.expiry_batch,
            max_expiry: Duration::from_secs(self.max_expiry_days * 86_400),
            max_schedules_per_tenant: self.max_schedules_per_tenant,
            schedule_batch: self.schedule_batch,
        }
    }

    pub fn schedule_check_interval(&self) -> Duration {
        Duration::from_secs_f64(self.schedule_check_interval_secs)
    }
}
