//! The service's error type. Each variant carries its HTTP status and a stable code; the
//! message is safe to show a client. Causes (libvirt, SQL, Redis texts) go to the logs through
//! `tracing` where the error is made, never into a client body unless they are the client's.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ports::{ComputeError, QuotaError, QuotaResource, RepoError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Malformed or invalid input (400).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The caller's role does not allow the call on a resource it can see (403).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown instance, state or operation, or one of another tenant (404). The message is
    /// the same bytes whichever it was and whatever the id: the id asked for goes to the logs.
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// A state with this name already exists for the instance (409).
    #[error("a state named {0:?} already exists for this instance")]
    DuplicateName(String),
    /// Another operation is running on the instance (409).
    #[error("instance is busy with operation {0}")]
    InstanceBusy(Uuid),
    /// The state is not `available` (409).
    #[error("state is {0}, it must be available")]
    StateNotAvailable(String),
    /// The state's files are on another host than the instance now runs on, and cannot follow
    /// it (host-local files of an external state) (409).
    #[error("the files of this state are on host {holder}, but the instance now runs on {current}; \
             they cannot follow it: apply or delete the state once the instance is back on {holder}")]
    StateOnOtherHost { holder: String, current: String },
    /// A cancel of an operation that has ended (409).
    #[error("the operation has ended; there is nothing left to cancel")]
    OperationFinished,
    /// A cancel of an operation that is not a save (an apply or delete cannot stop half-way
    /// without leaving the instance or the state broken) (409).
    #[error("a {0} cannot be cancelled; only a save can")]
    OperationNotCancellable(&'static str),
    /// An edit of `expires_at` on a state whose expiry has passed: it is being deleted (409).
    #[error("the state has expired and is being deleted; its expiry can no longer be changed")]
    StateExpired,
    /// The tenant keeps `lifecycle.max_schedules_per_tenant` schedules already (403).
    #[error("the tenant already has {limit} schedules, the most it may keep")]
    ScheduleLimitExceeded { limit: u64 },
    /// The tenant keeps `webhooks.max_per_tenant` webhooks already (409).
    #[error("the tenant already has {limit} webhooks, the most it may keep")]
    WebhookLimitExceeded { limit: u64 },
    /// The instance cannot get a memory snapshot now (409 when it is not running, 422 for its
    /// configuration).
    #[error("{message}")]
    Unsupported { code: &'static str, message: String },
    #[error("quota exceeded for {}", resource.as_str())]
    QuotaExceeded {
        resource: QuotaResource,
        limit: i64,
        in_use: i64,
        reserved: i64,
        requested: i64,
    },
    #[error("save rate limit reached")]
    RateLimited { retry_after_secs: u64 },
    /// A per-tenant bound on the gateway's own resources (concurrent waits, dry runs) (429).
    #[error("{message}")]
    Throttled {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },
    /// The `Idempotency-Key` was already used by this tenant for another request (another
    /// caller, operation, target or body) within its lifetime (422).
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// A request with the same `Idempotency-Key` is still being processed (409, `Retry-After`).
    #[error("a request with this Idempotency-Key is still being processed; retry it later")]
    IdempotencyKeyInUse { retry_after_secs: u64 },
    /// The new policy chain could not be loaded; the old one keeps serving (422).
    #[error("{0}")]
    PolicyReloadFailed(String),
    #[error("denied by policy {plugin}: {reason}")]
    PolicyDenied {
        plugin: String,
        code: String,
        reason: String,
        warnings: Vec<String>,
    },
    #[error("quota backend unavailable")]
    QuotaUnavailable { retry_after_secs: u64 },
    /// A backend (database or compute host) cannot be reached (503).
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// A bug or an unexpected backend answer (500). The message is generic; the cause is logged.
    #[error("internal error")]
    Internal,
}

/// The JSON body of every error: `{"error": {"code": …, "message": …, …details}}`. The CLI
/// decodes it too (the details keep whatever members a newer gateway adds).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub details: Map<String, Value>,
}

impl ServiceError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(what: &'static str, id: impl std::fmt::Display) -> Self {
        tracing::debug!(what, %id, "not found, or not visible to the caller");
        ServiceError::NotFound { what }
    }

    /// HTTP status of the variant.
    pub fn status(&self) -> u16 {
        match self {
            ServiceError::BadRequest { .. } => 400,
            ServiceError::Forbidden(_) => 403,
            ServiceError::NotFound { .. } => 404,
            ServiceError::DuplicateName(_)
            | ServiceError::InstanceBusy(_)
            | ServiceError::StateNotAvailable(_)
            | ServiceError::StateOnOtherHost { .. }
            | ServiceError::IdempotencyKeyInUse { .. } => 409,
            ServiceError::StateExpired
            | ServiceError::OperationFinished
            | ServiceError::OperationNotCancellable(_) => 409,
            ServiceError::ScheduleLimitExceeded { .. } => 403,
            ServiceError::WebhookLimitExceeded { .. } => 409,
            ServiceError::Unsupported { code, .. } if *code == "instance_not_running" => 409,
            ServiceError::Unsupported { .. }
            | ServiceError::PolicyReloadFailed(_)
            | ServiceError::IdempotencyKeyReused => 422,
            ServiceError::QuotaExceeded { .. } | ServiceError::PolicyDenied { .. } => 403,
            ServiceError::RateLimited { .. } | ServiceError::Throttled { .. } => 429,
            ServiceError::QuotaUnavailable { .. } | ServiceError::Unavailable { .. } => 503,
            ServiceError::Internal => 500,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::BadRequest { code, .. } => code,
            ServiceError::Forbidden(_) => "forbidden",
            ServiceError::NotFound { what, .. } => match *what {
                "instance" => "instance_not_found",
                "state" => "state_not_found",
                "operation" => "operation_not_found",
                "tenant" => "tenant_not_found",
                "schedule" => "schedule_not_found",
                "webhook" => "webhook_not_found",
                _ => "not_found",
            },
            ServiceError::DuplicateName(_) => "duplicate_name",
            ServiceError::InstanceBusy(_) => "instance_busy",
            ServiceError::StateNotAvailable(_) => "state_not_available",
            ServiceError::StateOnOtherHost { .. } => "state_on_other_host",
            ServiceError::StateExpired => "state_expired",
            ServiceError::OperationFinished => "operation_finished",
            ServiceError::OperationNotCancellable(_) => "operation_not_cancellable",
            ServiceError::ScheduleLimitExceeded { .. } => "schedule_limit_exceeded",
            ServiceError::WebhookLimitExceeded { .. } => "webhook_limit_exceeded",
            ServiceError::Unsupported { code, .. } => code,
            ServiceError::QuotaExceeded { .. } => "quota_exceeded",
            ServiceError::RateLimited { .. } => "rate_limited",
            ServiceError::Throttled { code, .. } => code,
            ServiceError::PolicyReloadFailed(_) => "policy_reload_failed",
            ServiceError::IdempotencyKeyReused => "idempotency_key_reused",
            ServiceError::IdempotencyKeyInUse { .. } => "idempotency_key_in_use",
            ServiceError::PolicyDenied { .. } => "policy_denied",
            ServiceError::QuotaUnavailable { .. } => "quota_backend_unavailable",
            ServiceError::Unavailable { code, .. } => code,
            ServiceError::Internal => "internal_error",
        }
    }

    /// Seconds for a `Retry-After` header, where one fits.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ServiceError::RateLimited { retry_after_secs }
            | ServiceError::Throttled {
                retry_after_secs, ..
            }
            | ServiceError::QuotaUnavailable { retry_after_secs }
            | ServiceError::IdempotencyKeyInUse { retry_after_secs } => Some(*retry_after_secs),
            ServiceError::Unavailable { .. } => Some(5),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let details = match self {
            ServiceError::InstanceBusy(op) => json!({ "operation": op }),
            ServiceError::ScheduleLimitExceeded { limit }
            | ServiceError::WebhookLimitExceeded { limit } => json!({ "limit": limit }),
            ServiceError::StateOnOtherHost { holder, current } => {
                json!({ "host": holder, "instance_host": current })
            }
            ServiceError::QuotaExceeded {
                resource,
                limit,
                in_use,
                reserved,
                requested,
            } => json!({
                "resource": resource.as_str(), "limit": limit, "in_use": in_use,
                "reserved": reserved, "requested": requested,
            }),
            ServiceError::PolicyDenied {
                plugin,
                code,
                reason,
                warnings,
            } => json!({
                "plugin": plugin, "policy_code": code, "reason": reason, "warnings": warnings,
            }),
            ServiceError::RateLimited { retry_after_secs }
            | ServiceError::Throttled {
                retry_after_secs, ..
            }
            | ServiceError::QuotaUnavailable { retry_after_secs }
            | ServiceError::IdempotencyKeyInUse { retry_after_secs } => {
                json!({ "retry_after": retry_after_secs })
            }
            _ => json!({}),
        };
        let Value::Object(details) = details else {
            unreachable!("json! object")
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                details,
            },
        }
    }
}

impl From<RepoError> for ServiceError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::DuplicateName(n) => ServiceError::DuplicateName(n),
            RepoError::InstanceBusy(op) => ServiceError::InstanceBusy(op),
            RepoError::WrongStatus(s) => ServiceError::StateNotAvailable(s.to_string()),
            RepoError::NotFound => ServiceError::NotFound { what: "resource" },
            RepoError::IdempotencyKeyTaken => ServiceError::IdempotencyKeyInUse {
                retry_after_secs: 1,
            },
            // Only background work writes under a lease (`service/ending.rs` handles it there);
            // one reaching a request is a bug, not the client's doing.
            RepoError::Fenced(op) => {
                tracing::error!(operation = %op, "a write refused by an operation's lease reached a request");
                ServiceError::Internal
            }
            RepoError::Unavailable(m) => {
                tracing::error!(error = %m, "database unavailable");
                ServiceError::Unavailable {
                    code: "database_unavailable",
                    message: "database unavailable".into(),
                }
            }
            RepoError::Other(m) => {
                tracing::error!(error = %m, "database error");
                ServiceError::Internal
            }
        }
    }
}

impl From<QuotaError> for ServiceError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Exceeded {
                resource,
                limit,
                in_use,
                reserved,
                requested,
            } => ServiceError::QuotaExceeded {
                resource,
                limit,
                in_use,
                reserved,
                requested,
            },
            QuotaError::RateLimited { retry_after_secs } => {
                ServiceError::RateLimited { retry_after_secs }
            }
            QuotaError::Unavailable(m) => {
                tracing::warn!(error = %m, "quota backend unavailable");
                ServiceError::QuotaUnavailable {
                    retry_after_secs: 5,
                }
            }
        }
    }
}

impl From<ComputeError> for ServiceError {
    fn from(e: ComputeError) -> Self {
        match e {
            ComputeError::InstanceNotFound(id) => ServiceError::not_found("instance", id),
            // Built by snapgate from the client's own instance (its disks, its state), never
            // libvirt's text.
            ComputeError::Unsupported { code, message } => {
                ServiceError::Unsupported { code, message }
            }
            // The client gets the code's fixed message; the cause (host, libvirt's words) is
            // logged here, inside the request's span (its request id).
            other => {
                tracing::warn!(error = %other, code = other.code(), "compute backend error");
                let code = match other {
                    ComputeError::HostUnreachable { .. } => "compute_unavailable",
                    _ => "compute_error",
                };
                ServiceError::Unavailable {
                    code,
                    message: other.client_message().into(),
                }
            }
        }
    }
}
