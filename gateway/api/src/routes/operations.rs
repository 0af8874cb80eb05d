//! `/v1/operations/{operation_uuid}`: long work, readable and waitable.

use std::time::Duration;

use axum::extract::State as AppStateExt;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use snapgate_core::Operation;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::{PathParams, QueryParams};
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Seconds to wait at most (default 30, capped by the gateway's `api.max_wait_secs`).
    #[param(minimum = 0)]
    pub timeout: Option<f64>,
}

#[utoipa::path(get, path = "/v1/operations/{operation_uuid}", tag = "operations",
    operation_id = "get_operation", security(("bearer" = [])),
    params(("operation_uuid" = Uuid, Path)),
    responses((status = 200, body = Operation), (status = 404, body = snapgate_core::ErrorBody)))]
pub async fn get(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(id): PathParams<Uuid>,
) -> Result<Json<Operation>, ApiError> {
    Ok(Json(app.service.get_operation(&caller, id).await?))
}

/// Cancels a running or pending save: libvirt's job is aborted and the save ends `failed`
/// with code `cancelled`, its state removed and its quota returned. The answer carries the
/// operation with `cancel_requested_at`; a save libvirt finished before the gateway running it
/// read the request succeeds anyway (wait on the operation to know).
#[utoipa::path(delete, path = "/v1/operations/{operation_uuid}", tag = "operations",
    operation_id = "cancel_operation", security(("bearer" = [])),
    params(("operation_uuid" = Uuid, Path)),
    responses((status = 202, description = "the cancel is recorded and libvirt's job aborted", body = Operation),
        (status = 403, description = "the caller's role is below member (`forbidden`)", body = snapgate_core::ErrorBody),
        (status = 404, body = snapgate_core::ErrorBody),
        (status = 409, description = "the operation has ended (`operation_finished`), or is an apply or a delete (`operation_not_cancellable`)", body = snapgate_core::ErrorBody)))]
pub async fn cancel(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(id): PathParams<Uuid>,
) -> Result<(StatusCode, Json<Operation>), ApiError> {
    let op = app.service.cancel_operation(&caller, id).await?;
    Ok((StatusCode::ACCEPTED, Json(op)))
}

/// Returns when the operation ends or the timeout passes (then with the operation as it is).
#[utoipa::path(get, path = "/v1/operations/{operation_uuid}/wait", tag = "operations",
    operation_id = "wait_operation", security(("bearer" = [])),
    params(("operation_uuid" = Uuid, Path), WaitQuery),
    responses((status = 200, body = Operation), (status = 404, body = snapgate_core::ErrorBody),
        (status = 429, description = "the tenant holds `api.max_waits_per_tenant` waits already (`too_many_waits`, `Retry-After`)", body = snapgate_core::ErrorBody)))]
pub async fn wait(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(id): PathParams<Uuid>,
    QueryParams(q): QueryParams<WaitQuery>,
) -> Result<Json<Operation>, ApiError> {
    let secs = q.timeout.unwrap_or(30.0);
    if !secs.is_finite() || secs < 0.0 {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "timeout must be a number of seconds, at least 0",
        ));
    }
    let timeout = Duration::from_secs_f64(secs.min(app.limits.max_wait_secs as f64));
    let outcome = app.service.wait_operation(&caller, id, timeout).await?;
    Ok(Json(outcome.operation))
}
