//! Idempotent retries: save, apply and delete sent with an `Idempotency-Key`.
//!
//! A client that lost the answer to a state-changing call sends it again with the same key and
//! gets the first answer back (the same 202 body: the same state and operation), from any
//! gateway, instead of a second state or a second apply. The rules (docs/API.md):
//!
//! - Keys live in the caller's tenant: the tenant is the key's namespace, so a tenant can never
//!   reach another tenant's answer, or learn that a key is in use there.
//! - A key is bound to one request: the SHA-256 of its canonical form (the caller's subject, the
//!   operation, its instance and state, the validated body). The same key with any other
//!   request is 422 `idempotency_key_reused`.
//! - The request claims the key before any work, in the database (so every gateway sees it);
//!   the answer replaces the claim in the transaction that records the accepted operation
//!   (`Repository::begin_keyed_save`), so no operation exists without its answer, and no
//!   answer without its operation. A duplicate arriving while the claim is held gets 409
//!   `idempotency_key_in_use` with `Retry-After`.
//! - Only accepted work is stored. A refusal (any 4xx) or a failure (5xx) has undone whatever
//!   it started, so nothing can happen twice: its claim is dropped and a retry is evaluated
//!   afresh — it succeeds once the cause (a busy instance, a quota, an outage) is gone.
//! - A claim whose request died (its gateway was killed) is taken over after `stale_after`; if
//!   that request was only slow, writing its answer finds the claim gone and its work is
//!   rolled back with it (409 `idempotency_key_in_use`), so one key never accepts twice.
//! - Dry runs change nothing: the key is validated and otherwise ignored.
//! - Answers are kept `idempotency_key_ttl` (24 h) and then purged by the maintenance loop.

use std::future::Future;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::states::{Accepted, StateChange};
use super::{validate, Service};
use crate::auth::Caller;
use crate::ports::{IdempotencyClaim, KeyClaim, KeyedAnswer};
use crate::{OperationKind, SaveMode, ServiceError};

/// Expired keys deleted per statement, and statements per maintenance pass (as for decisions).
pub const IDEMPOTENCY_PURGE_BATCH: u64 = 1000;
const IDEMPOTENCY_PURGE_BATCHES_PER_PASS: u32 = 20;

/// What a duplicate in flight is told to wait before trying again: the flow up to the 202 is
/// short (it never waits for libvirt's snapshot work).
const IN_USE_RETRY_AFTER_SECS: u64 = 1;

/// A keyed request in canonical form: what its fingerprint hashes. Parsed and validated
/// values, never raw bytes, so JSON spacing, key order or a name's normalisation form do not
/// make two identical requests differ. Fields in a fixed order (serde keeps declaration order).
#[derive(Debug, Serialize)]
pub(super) struct CanonicalRequest<'a> {
    pub operation: OperationKind,
    pub instance: Uuid,
    pub state: Option<Uuid>,
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub mode: Option<SaveMode>,
    /// Left out when absent, so requests without an expiry hash as they always did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// How the answer is stored: the REST forms of the state and the operation (what the 202
/// body is made of) and the tenant their REST forms leave out.
#[derive(Debug, Serialize, Deserialize)]
struct StoredAnswer {
    tenant: String,
    state: Value,
    operation: Value,
    warnings: Vec<String>,
}

impl Service {
    /// Runs a state-changing flow under its idempotency key, when it has one: replays a stored
    /// answer, refuses a key used for another request or still in use, or claims the key and
    /// runs `flow` with the claim (which stores the answer with the accepted operation). A
    /// flow that fails drops its claim.
    pub(super) async fn keyed<Fut>(
        &self,
        caller: &Caller,
        key: Option<String>,
        request: &CanonicalRequest<'_>,
        flow: impl FnOnce(Option<IdempotencyClaim>) -> Fut,
    ) -> Result<StateChange, ServiceError>
    where
        Fut: Future<Output = Result<StateChange, ServiceError>>,
    {
        let Some(key) = key else {
            return flow(None).await;
        };
        let claim = self.new_claim(caller, key, request);
        let stale_before = claim.claimed_at - chrono_duration(self.settings.stale_after);
        let held = match self
            .repo
            .claim_idempotency_key(&claim, stale_before)
            .await?
        {
            KeyClaim::Claimed => None,
            KeyClaim::Held(record) => Some(record),
        };
        let Some(record) = held else {
            count("claimed");
            let result = flow(Some(claim.clone())).await;
            if result.is_err() {
                self.release_key(&claim).await;
            }
            return result;
        };
        if record.fingerprint != claim.fingerprint {
            count("reused");
            return Err(ServiceError::IdempotencyKeyReused);
        }
        match record.answer {
            Some(answer) => {
                count("replayed");
                Ok(StateChange::Accepted(Box::new(decode(&answer)?)))
            }
            None => {
                count("in_use");
                Err(ServiceError::IdempotencyKeyInUse {
                    retry_after_secs: IN_USE_RETRY_AFTER_SECS,
                })
            }
        }
    }

    fn new_claim(
        &self,
        caller: &Caller,
        key: String,
        request: &CanonicalRequest<'_>,
    ) -> IdempotencyClaim {
        let now = Utc::now().trunc_subsecs(6);
        IdempotencyClaim {
            tenant: caller.tenant.clone(),
            key,
            fingerprint: fingerprint(caller, request),
            token: Uuid::new_v4(),
            claimed_at: now,
            expires_at: self.key_expiry(now),
        }
    }

    fn key_expiry(&self, from: DateTime<Utc>) -> DateTime<Utc> {
        from + chrono_duration(self.settings.idempotency_key_ttl)
    }

    /// The answer to store with the accepted operation (`None` without a claim).
    pub(super) fn keyed_answer(
        &self,
        claim: Option<&IdempotencyClaim>,
        accepted: &Accepted,
    ) -> Result<Option<KeyedAnswer>, ServiceError> {
        let Some(claim) = claim else {
            return Ok(None);
        };
        let stored = StoredAnswer {
            tenant: accepted.state.tenant_id.clone(),
            state: serde_json::to_value(&accepted.state).map_err(encode_error)?,
            operation: serde_json::to_value(&accepted.operation).map_err(encode_error)?,
            warnings: accepted.warnings.clone(),
        };
        let now = Utc::now().trunc_subsecs(6);
        Ok(Some(KeyedAnswer {
            claim: claim.clone(),
            answer: serde_json::to_string(&stored).map_err(encode_error)?,
            operation: accepted.operation.uuid,
            expires_at: self.key_expiry(now),
        }))
    }

    async fn release_key(&self, claim: &IdempotencyClaim) {
        if let Err(e) = self.repo.release_idempotency_key(claim).await {
            // The claim is taken over after `stale_after` by the next request with the key.
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
    }

    /// Deletes expired keys, in bounded batches (a backlog is worked off over several passes).
    pub(super) async fn purge_idempotency_keys(&self) -> Result<u64, ServiceError> {
        let now = Utc::now();
        let mut purged = 0;
        for _ in 0..IDEMPOTENCY_PURGE_BATCHES_PER_PASS {
            let n = self
                .repo
                .purge_idempotency_keys(now, IDEMPOTENCY_PURGE_BATCH)
                .await?;
            purged += n;
            if n < IDEMPOTENCY_PURGE_BATCH {
                break;
            }
        }
        if purged > 0 {
            tracing::debug!(purged, "expired idempotency keys purged");
            metrics::counter!("snapgate_idempotency_keys_purged_total").increment(purged);
        }
        Ok(purged)
    }
}

/// The key as the flow takes it: validated when given; dropped for a dry run, which changes
/// nothing and so has nothing to replay.
pub(super) fn usable_key(
    key: Option<String>,
    dry_run: bool,
) -> Result<Option<String>, ServiceError> {
    if let Some(k) = &key {
        validate::idempotency_key(k)?;
    }
    Ok(key.filter(|_| !dry_run))
}

/// Hex SHA-256 of the caller's subject and the canonical request. The tenant is not in it: it
/// is the key's namespace.
fn fingerprint(caller: &Caller, request: &CanonicalRequest<'_>) -> String {
    let canonical =
        serde_json::to_vec(&(&caller.subject, request)).expect("a canonical request serializes");
    Sha256::digest(&canonical)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode(answer: &str) -> Result<Accepted, ServiceError> {
    let corrupt = |e: serde_json::Error| {
        tracing::error!(error = %e, "a stored idempotent answer cannot be read");
        ServiceError::Internal
    };
    let mut stored: StoredAnswer = serde_json::from_str(answer).map_err(corrupt)?;
    for part in [&mut stored.state, &mut stored.operation] {
        if let Value::Object(map) = part {
            map.insert("tenant_id".into(), Value::String(stored.tenant.clone()));
        }
    }
    Ok(Accepted {
        state: serde_json::from_value(stored.state).map_err(corrupt)?,
        operation: serde_json::from_value(stored.operation).map_err(corrupt)?,
        warnings: stored.warnings,
        replayed: true,
    })
}

fn encode_error(e: serde_json::Error) -> ServiceError {
    tracing::error!(error = %e, "cannot encode an idempotent answer");
    ServiceError::Internal
}

/// Capped at a century, so adding it to a time can neither overflow nor leave what both
/// databases can store.
fn chrono_duration(d: std::time::Duration) -> chrono::Duration {
    let century = chrono::Duration::days(36_525);
    chrono::Duration::from_std(d).map_or(century, |d| d.min(century))
}

fn count(outcome: &'static str) {
    metrics::counter!("snapgate_idempotent_requests_total", "outcome" => outcome).increment(1);
}
