//! Health, readiness, metrics and the OpenAPI document. None needs a token.

use axum::extract::State as AppStateExt;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers and at least one compute host is up. Every host is
/// reported from its circuit breaker, without asking it: a dead host never makes this wait.
#[utoipa::path(get, path = "/readyz", tag = "system", responses((status = 200), (status = 503)))]
pub async fn readyz(AppStateExt(app): AppStateExt<AppState>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    let db = app.service.repo().ping().await;
    ready &= db.is_ok();
    checks.insert("database".into(), check_json(db.map_err(|e| e.to_string())));
    let health = app.service.hosts_health();
    // One host down costs only its own instances, so it does not take the gateway out of a
    // load balancer; with every host down the gateway can serve nothing but reads.
    ready &= health.is_empty()
        || health
            .iter()
            .any(|h| h.breaker == snapgate_core::ports::BreakerState::Closed);
    let mut hosts = serde_json::Map::new();
    for h in health {
        let ok = h.breaker == snapgate_core::ports::BreakerState::Closed;
        let mut entry =
            json!({ "ok": ok, "breaker": h.breaker.as_str(), "connected": h.connected });
        if let Some(e) = h.error {
            entry["error"] = e.into();
        }
        hosts.insert(h.host, entry);
    }
    checks.insert("hosts".into(), hosts.into());
    // The quota store is reported but does not gate readiness: reads, applies and deletes go on
    // without it.
    let quota = app
        .service
        .quota_store()
        .is_primed()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    checks.insert("quota".into(), check_json(quota));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "status": if ready { "ready" } else { "not_ready" }, "checks": checks })),
    )
        .into_response()
}

fn check_json(r: Result<(), String>) -> serde_json::Value {
    match r {
        Ok(()) => json!({ "ok": true }),
        Err(e) => json!({ "ok": false, "error": e }),
    }
}

/// Prometheus text format.
pub async fn metrics(AppStateExt(app): AppStateExt<AppState>) -> Response {
    match &app.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are disabled").into_response(),
    }
}

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}
