//! HTTP errors. Every error leaves as `{"error": {"code", "message", …}}` with the status the
//! service error names; rejections of axum's extractors are mapped to the same shape so a
//! client's mistake never becomes a 500 or a plain-text body.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde_json::Map;
use snapgate_core::error::ErrorDetail;
use snapgate_core::{ErrorBody, ServiceError};

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    pub retry_after: Option<u64>,
    /// Policy warnings still reach the client on a denial.
    pub warnings: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: ErrorDetail {
                    code: code.into(),
                    message: message.into(),
                    details: Map::new(),
                },
            },
            retry_after: None,
            warnings: Vec::new(),
        }
    }

    pub fn unauthenticated(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn code(&self) -> &str {
        &self.body.error.code
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let warnings = match &e {
            ServiceError::PolicyDenied { warnings, .. } => warnings.clone(),
            _ => Vec::new(),
        };
        if status.is_server_error() {
            tracing::warn!(code = e.code(), error = %e, "request failed");
        }
        Self {
            status,
            body: e.body(),
            retry_after: e.retry_after(),
            warnings,
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON with `Content-Type: application/json`",
            ),
            JsonRejection::JsonSyntaxError(e) => Self::bad_request(
                "malformed_json",
                format!("malformed JSON: {}", e.body_text()),
            ),
            // Unknown fields, missing fields and wrong types: serde names the field.
            JsonRejection::JsonDataError(e) => {
                Self::bad_request("invalid_body", strip_prefix(&e.body_text()))
            }
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is too large",
                )
            }
            other => Self::bad_request("invalid_body", other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(
            "invalid_path",
            format!("invalid path parameter: {}", r.body_text()),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request("invalid_parameter", strip_prefix(&r.body_text()))
    }
}

/// axum prefixes serde's message with its own words; keep serde's, which names the field.
fn strip_prefix(text: &str) -> String {
    for prefix in [
        "Failed to deserialize the JSON body into the target type: ",
        "Failed to deserialize query string: ",
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
    text.to_owned()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(&self.body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"snapgate\""),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        crate::warnings::append(headers, &self.warnings);
        // Lets the metrics layer count errors by code.
        response
            .extensions_mut()
            .insert(ErrorCode(self.body.error.code));
        response
    }
}

/// The code of an error response, for metrics and logs.
#[derive(Debug, Clone)]
pub struct ErrorCode(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use snapgate_core::ports::QuotaResource;

    /// Every service error variant carries the status its contract promises.
    #[test]
    fn statuses() {
        let cases: Vec<(ServiceError, u16, &str)> = vec![
            (
                ServiceError::bad_request("invalid_name", "x"),
                400,
                "invalid_name",
            ),
            (ServiceError::Forbidden("x".into()), 403, "forbidden"),
            (
                ServiceError::not_found("instance", "x"),
                404,
                "instance_not_found",
            ),
            (
                ServiceError::not_found("state", "x"),
                404,
                "state_not_found",
            ),
            (
                ServiceError::not_found("operation", "x"),
                404,
                "operation_not_found",
            ),
            (
                ServiceError::DuplicateName("x".into()),
                409,
                "duplicate_name",
            ),
            (
                ServiceError::InstanceBusy(uuid::Uuid::nil()),
                409,
                "instance_busy",
            ),
            (
                ServiceError::StateNotAvailable("saving".into()),
                409,
                "state_not_available",
            ),
            (
                ServiceError::StateOnOtherHost {
                    holder: "a".into(),
                    current: "b".into(),
                },
                409,
                "state_on_other_host",
            ),
            (
                ServiceError::Unsupported {
                    code: "instance_not_running",
                    message: "x".into(),
                },
                409,
                "instance_not_running",
            ),
            (
                ServiceError::Unsupported {
                    code: "unsupported_disk_format",
                    message: "x".into(),
                },
                422,
                "unsupported_disk_format",
            ),
            (
                ServiceError::QuotaExceeded {
                    resource: QuotaResource::States,
                    limit: 1,
                    in_use: 1,
                    reserved: 0,
                    requested: 1,
                },
                403,
                "quota_exceeded",
            ),
            (
                ServiceError::RateLimited {
                    retry_after_secs: 3,
                },
                429,
                "rate_limited",
            ),
            (
                ServiceError::Throttled {
                    code: "too_many_waits",
                    message: "x".into(),
                    retry_after_secs: 1,
                },
                429,
                "too_many_waits",
            ),
            (
                ServiceError::PolicyReloadFailed("x".into()),
                422,
                "policy_reload_failed",
            ),
            (
                ServiceError::IdempotencyKeyReused,
                422,
                "idempotency_key_reused",
            ),
            (
                ServiceError::IdempotencyKeyInUse {
                    retry_after_secs: 1,
                },
                409,
                "idempotency_key_in_use",
            ),
            (
                ServiceError::PolicyDenied {
                    plugin: "p".into(),
                    code: "c".into(),
                    reason: "r".into(),
                    warnings: vec![],
                },
                403,
                "policy_denied",
            ),
            (
                ServiceError::QuotaUnavailable {
                    retry_after_secs: 5,
                },
                503,
                "quota_backend_unavailable",
            ),
            (
                ServiceError::Unavailable {
                    code: "database_unavailable",
                    message: "x".into(),
                },
                503,
                "database_unavailable",
            ),
            (ServiceError::StateExpired, 409, "state_expired"),
            (ServiceError::OperationFinished, 409, "operation_finished"),
            (
                ServiceError::OperationNotCancellable("apply"),
                409,
                "operation_not_cancellable",
            ),
            (
                ServiceError::ScheduleLimitExceeded { limit: 2 },
                403,
                "schedule_limit_exceeded",
            ),
            (
                ServiceError::not_found("schedule", "x"),
                404,
                "schedule_not_found",
            ),
            (
                ServiceError::WebhookLimitExceeded { limit: 2 },
                409,
                "webhook_limit_exceeded",
            ),
            (
                ServiceError::not_found("webhook", "x"),
                404,
                "webhook_not_found",
            ),
            (ServiceError::Internal, 500, "internal_error"),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.status.as_u16(), status, "{code}");
            assert_eq!(api.code(), code);
        }
    }
}
