//! Health, readiness, metrics and the OpenAPI document. None needs a token. The public
//! listener answers readiness with its status only; the detail of each check (backend error
//! texts, host names) and the metrics are served on the operator's listener.

use axum::extract::State as AppStateExt;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiError;
use crate::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "system", operation_id = "healthz",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database and every configured compute host answer. The body is only
/// `{"status": "ready" | "not_ready"}`; the checks' detail is on the operator's listener.
#[utoipa::path(get, path = "/readyz", tag = "system", operation_id = "readyz",
    responses((status = 200, description = "ready: `{\"status\": \"ready\"}`", body = Object),
        (status = 503, description = "not ready: `{\"status\": \"not_ready\"}`", body = Object)))]
pub async fn readyz(AppStateExt(app): AppStateExt<AppState>) -> Response {
    let readiness = app.service.readiness().await;
    let (status, word) = status_of(readiness.ready);
    (status, Json(json!({ "status": word }))).into_response()
}

/// Readiness with every check: `{"status", "checks": {"database", "hosts": {name: …}, "quota"}}`,
/// each check `{"ok", "error"?}`. Operator's listener only.
pub async fn readyz_detail(AppStateExt(app): AppStateExt<AppState>) -> Response {
    let r = app.service.readiness().await;
    let (status, word) = status_of(r.ready);
    let checks = json!({ "database": r.database, "hosts": r.hosts, "quota": r.quota });
    (status, Json(json!({ "status": word, "checks": checks }))).into_response()
}

fn status_of(ready: bool) -> (StatusCode, &'static str) {
    if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    }
}

/// Prometheus text format. Operator's listener only.
pub async fn metrics(AppStateExt(app): AppStateExt<AppState>) -> Response {
    match &app.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", "metrics are disabled")
            .into_response(),
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", operation_id = "openapi",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
pub async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}
