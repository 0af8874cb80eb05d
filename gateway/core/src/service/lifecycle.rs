//! A state's life after its save (issue 12, point 1): edits (`PATCH …/states/{s}`) and expiry.
//!
//! Expired states are deleted by the maintenance loop through the ordinary delete
//! ([`Service::delete`], as a member of the state's tenant): the same tenant wall, quota
//! (freed when the delete ends), policy chain and one-operation-per-instance lock as a user's
//! delete. When several gateways run, the delete's own conditional start (`available` →
//! `deleting` together with the instance lock, one transaction) lets exactly one of them
//! through; the others see the state `deleting` or the instance busy and move on. A state
//! whose instance is busy, whose host is down or whose delete the policy refuses stays, and
//! is tried again on a later pass.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use super::access::require;
use super::{validate, ChangeInput, Service, StateChange};
use crate::auth::{Caller, Role};
use crate::ports::{PatchOutcome, RepoError, StatePatch};
use crate::{Operation, ServiceError, State};

/// How many times `expiry_batch` expired states one pass looks at.
const EXPIRY_LOOK_AHEAD: u64 = 4;

/// Settings of expiry and schedules.
#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    /// Expired states one maintenance pass starts deleting (the rest wait for the next pass).
    pub expiry_batch: u64,
    /// How far in the future an `expires_at` may be.
    pub max_expiry: Duration,
    /// Schedules one tenant may keep (`schedule_limit_exceeded` beyond).
    pub max_schedules_per_tenant: u64,
    /// Due schedules one gateway takes per scheduler tick.
    pub schedule_batch: u64,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            expiry_batch: 20,
            max_expiry: Duration::from_secs(10 * 366 * 24 * 3600),
            max_schedules_per_tenant: 20,
            schedule_batch: 20,
        }
    }
}

/// An edit as the client sent it (merge-patch: `None` leaves a field as it is, `Some(None)`
/// clears a nullable one). Validated by [`Service::update_state`].
#[derive(Debug, Clone, Default)]
pub struct StateEdit {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

impl Service {
    /// `PATCH /v1/instances/{i}/states/{s}`: the save's text rules, a member's role, the tenant
    /// wall (404), and no operation on the state (409 `state_not_available`); a new name is
    /// unique per instance (409 `duplicate_name`); the expiry of a state that has already
    /// expired cannot be changed (409 `state_expired`).
    pub async fn update_state(
        &self,
        caller: &Caller,
        instance: Uuid,
        state: Uuid,
        edit: StateEdit,
    ) -> Result<State, ServiceError> {
        let patch = StatePatch {
            name: edit.name.as_deref().map(validate::state_name).transpose()?,
            description: match edit.description {
                Some(Some(text)) => Some(Some(validate::description(&text)?)),
                other => other,
            },
            expires_at: match edit.expires_at {
                Some(Some(at)) => Some(Some(self.valid_expiry(at)?)),
                other => other,
            },
        };
        self.visible_instance_and_state(caller, instance, state)
            .await?;
        require(caller, Role::Member)?;
        let now = Utc::now().trunc_subsecs(6);
        match self
            .lifecycle
            .update_state(instance, state, &patch, now)
            .await
        {
            Ok(PatchOutcome::Updated(state)) => Ok(*state),
            Ok(PatchOutcome::Expired) => Err(ServiceError::StateExpired),
            Err(RepoError::NotFound) => Err(ServiceError::not_found("state", state)),
            Err(e) => Err(e.into()),
        }
    }

    /// An `expires_at` as it is stored: in the future and at most `lifecycle.max_expiry` away,
    /// at the precision both databases keep.
    pub(super) fn valid_expiry(&self, at: DateTime<Utc>) -> Result<DateTime<Utc>, ServiceError> {
        let now = Utc::now();
        let max = chrono::Duration::from_std(self.settings.lifecycle.max_expiry)
            .unwrap_or(chrono::Duration::days(3660));
        if at <= now {
            return Err(ServiceError::bad_request(
                "invalid_expires_at",
                "expires_at must be in the future",
            ));
        }
        if at > now + max {
            return Err(ServiceError::bad_request(
                "invalid_expires_at",
                format!(
                    "expires_at must be at most {} days from now",
                    max.num_days()
                ),
            ));
        }
        Ok(at.trunc_subsecs(6))
    }

    /// Starts deleting up to `lifecycle.expiry_batch` expired states; returns how many deletes
    /// this gateway started. Refusals are not errors: the state is tried again next pass.
    /// A few times the batch are looked at, so states that keep being refused (a policy that
    /// denies their delete, a host that stays down) do not hold back the ones behind them.
    pub async fn expire_states(self: &Arc<Self>) -> Result<usize, ServiceError> {
        let batch = self.settings.lifecycle.expiry_batch;
        let due = self
            .lifecycle
            .expired_states(Utc::now(), batch.saturating_mul(EXPIRY_LOOK_AHEAD))
            .await?;
        let mut started = 0;
        for state in due {
            if started as u64 >= batch {
                break;
            }
            match self.expire(&state).await {
                Ok(op) => {
                    started += 1;
                    metrics::counter!("snapgate_states_expired_total", "result" => "started")
                        .increment(1);
                    tracing::info!(state = %state.uuid, instance = %state.instance_uuid,
                        operation = %op.uuid, expires_at = ?state.expires_at, "deleting an expired state");
                }
                // Another gateway (or a user) got there first: nothing to do.
                Err(ServiceError::StateNotAvailable(_) | ServiceError::NotFound { .. }) => {}
                Err(e) => {
                    metrics::counter!("snapgate_states_expired_total", "result" => "postponed")
                        .increment(1);
                    tracing::info!(state = %state.uuid, instance = %state.instance_uuid,
                        code = e.code(), error = %e, "an expired state could not be deleted yet; retried on a later pass");
                }
            }
        }
        Ok(started)
    }

    /// The ordinary delete, as a member of the state's tenant.
    async fn expire(self: &Arc<Self>, state: &State) -> Result<Operation, ServiceError> {
        let mut caller = Caller::new(state.tenant_id.clone(), Role::Member);
        caller.subject = "snapgate:expiry".into();
        match self
            .delete(
                &caller,
                state.instance_uuid,
                state.uuid,
                ChangeInput::default(),
            )
            .await?
        {
            StateChange::Accepted(accepted) => Ok(accepted.operation),
            StateChange::DryRun(_) => Err(ServiceError::Internal),
        }
    }
}
