//! Cross-cutting HTTP layers: request ids, a tracing span per request, metrics by route and
//! status, a bound on requests in flight and on their time, the body size limit, panics
//! turned into JSON 500s, and JSON for unknown routes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::error::ApiError;
use crate::ApiLimits;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";
/// The route of long polls: bounded by `max_wait_secs`, not by the request timeout.
const WAIT_ROUTE: &str = "/v1/operations/{operation_uuid}/wait";
/// Never refused for load: a load balancer must tell "busy" from "dead".
const HEALTH_ROUTE: &str = "/healthz";

/// Adds the layers to a router (the last one added runs first).
pub fn apply(router: axum::Router, limits: ApiLimits) -> axum::Router {
    let bounds = Arc::new(Bounds {
        in_flight: Arc::new(Semaphore::new(limits.max_requests_in_flight)),
        timeout: limits.request_timeout,
        wait_timeout: limits.request_timeout + Duration::from_secs(limits.max_wait_secs),
    });
    router
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(axum::middleware::from_fn_with_state(bounds, bound))
        .layer(axum::middleware::from_fn(observe))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

/// The operator's listener: request ids, panics as JSON; no request metrics (scrapes would
/// count themselves) and no load bound (it must answer when the public side is saturated).
pub fn apply_admin(router: axum::Router) -> axum::Router {
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

/// The method as a metric label and log field: one of the standard methods, else `other`.
/// Clients choose the method text; as a label it would make a new series per value.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// The route template the router matched (a fixed set), or `unmatched`; never the raw path.
fn route_label(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED.into())
}

/// One span per request (with its request id) and the request metrics.
async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = route_label(&req);
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
        ("method", method.to_owned()),
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

/// The load bounds of the public listener.
struct Bounds {
    /// One permit per request being served.
    in_flight: Arc<Semaphore>,
    timeout: Duration,
    wait_timeout: Duration,
}

/// A request being served; counted in `snapgate_http_requests_in_flight` until its work ends.
struct InFlight {
    _permit: OwnedSemaphorePermit,
}

impl InFlight {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!("snapgate_http_requests_in_flight").increment(1.0);
        Self { _permit: permit }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("snapgate_http_requests_in_flight").decrement(1.0);
    }
}

/// At most `max_requests_in_flight` requests at once (503 `overloaded` beyond), each answered
/// within the request timeout (504 `request_timeout`). The handler runs in a task of its own
/// that is never cancelled: a flow stopped half-way could leave a quota reservation or a lock
/// behind, so a timed-out request still finishes in the background (holding its permit), and
/// only the client stops waiting.
async fn bound(State(bounds): State<Arc<Bounds>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    if route == Some(HEALTH_ROUTE) {
        return next.run(req).await;
    }
    let timeout = if route == Some(WAIT_ROUTE) {
        bounds.wait_timeout
    } else {
        bounds.timeout
    };
    let Ok(permit) = bounds.in_flight.clone().try_acquire_owned() else {
        metrics::counter!("snapgate_http_requests_refused_total", "reason" => "overloaded")
            .increment(1);
        return with_retry_after(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the gateway is serving as many requests as it may; retry shortly",
        ));
    };
    let in_flight = InFlight::new(permit);
    let span = tracing::Span::current();
    let mut work = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let _in_flight = in_flight;
            next.run(req).await
        },
        span,
    ));
    match tokio::time::timeout(timeout, &mut work).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => panic_response(Box::new("handler task failed")),
        Err(_) => {
            metrics::counter!("snapgate_http_requests_refused_total", "reason" => "timeout")
                .increment(1);
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "request timed out; its work goes on in the background"
            );
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "request_timeout",
                "the gateway did not finish this request in time; a state-changing call may \
                 still take effect: read the states or operations to find out",
            )
            .into_response()
        }
    }
}

fn with_retry_after(mut err: ApiError) -> Response {
    err.retry_after = Some(1);
    err.into_response()
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
