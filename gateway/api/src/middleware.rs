//! Cross-cutting HTTP layers: request ids, a tracing span per request, metrics by route and
//! status, the body size limit, panics turned into JSON 500s, and JSON for unknown routes.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::error::ApiError;
use crate::ApiLimits;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds the layers to a router (the last one added runs first).
pub fn apply(router: axum::Router, limits: ApiLimits) -> axum::Router {
    router
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(axum::middleware::from_fn(observe))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

/// One span per request (with its request id) and the request metrics.
async fn observe(req: Request, next: Next) -> Response {
    {
        let started = Instant::now();
        let method = req.method().clone();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "unmatched".into());
        let request_id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let span = tracing::info_span!("request", %request_id, %method, %route, tenant = tracing::field::Empty);
        let response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
        let status = response.status();
        let elapsed = started.elapsed();
        // A body larger than the limit surfaces as a plain 413 from the limit layer.
        let response = if status == StatusCode::PAYLOAD_TOO_LARGE
            && response
                .extensions()
                .get::<crate::error::ErrorCode>()
                .is_none()
        {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is too large",
            )
            .into_response()
        } else {
            response
        };
        let labels = [
            ("method", method.to_string()),
            ("route", route),
            ("status", status.as_u16().to_string()),
        ];
        metrics::counter!("snapgate_http_requests_total", &labels).increment(1);
        metrics::histogram!("snapgate_http_request_duration_seconds", &labels)
            .record(elapsed.as_secs_f64());
        span.in_scope(|| {
            tracing::debug!(
                status = status.as_u16(),
                elapsed_us = elapsed.as_micros() as u64,
                "request done"
            )
        });
        response
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send>) -> Response {
    tracing::error!("a handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
    .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
