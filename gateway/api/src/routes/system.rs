//! Health, readiness, metrics and the OpenAPI document. None needs a token.

use axum::extract::State as AppStateExt;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "system", operation_id = "healthz",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database and every configured compute host answer.
#[utoipa::path(get, path = "/readyz", tag = "system", operation_id = "readyz",
    responses((status = 200, description = "ready, with each check", body = Object),
        (status = 503, description = "not ready, with each check", body = Object)))]
pub async fn readyz(AppStateExt(app): AppStateExt<AppState>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    let db = app.service.repo().ping().await;
    ready &= db.is_ok();
    checks.insert("database".into(), check_json(db.map_err(|e| e.to_string())));
    let compute = app.service.compute().clone();
    let mut hosts = serde_json::Map::new();
    for host in compute.hosts() {
        let r = compute.ping(&host).await;
        ready &= r.is_ok();
        hosts.insert(host, check_json(r.map_err(|e| e.to_string())));
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
#[utoipa::path(get, path = "/metrics", tag = "system", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 404, description = "metrics are disabled", body = String, content_type = "text/plain")))]
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

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", operation_id = "openapi",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}
