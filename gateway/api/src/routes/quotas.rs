//! `/v1/quotas/{tenant_id}`: limits and usage.

use axum::extract::State as AppStateExt;
use axum::Json;
use snapgate_core::ports::QuotaLimits;
use snapgate_core::service::QuotaView;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::{Body, PathParams};
use crate::AppState;

#[utoipa::path(get, path = "/v1/quotas/{tenant_id}", tag = "quotas",
    operation_id = "get_quota", security(("bearer" = [])),
    params(("tenant_id" = String, Path, min_length = 1, max_length = 255,
        pattern = "@tenant_id")),
    responses((status = 200, body = QuotaView), (status = 404, body = snapgate_core::ErrorBody)))]
pub async fn get(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(tenant): PathParams<String>,
) -> Result<Json<QuotaView>, ApiError> {
    Ok(Json(app.service.get_quota(&caller, &tenant).await?))
}

#[utoipa::path(put, path = "/v1/quotas/{tenant_id}", tag = "quotas",
    operation_id = "set_quota", security(("bearer" = [])),
    params(("tenant_id" = String, Path, min_length = 1, max_length = 255,
        pattern = "@tenant_id")), request_body = QuotaLimits,
    responses((status = 200, body = QuotaView), (status = 403, body = snapgate_core::ErrorBody)))]
pub async fn put(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(tenant): PathParams<String>,
    Body(limits): Body<QuotaLimits>,
) -> Result<Json<QuotaView>, ApiError> {
    Ok(Json(
        app.service
            .set_quota(&caller, &tenant, Some(limits))
            .await?,
    ))
}

/// Returns the tenant to the default limits.
#[utoipa::path(delete, path = "/v1/quotas/{tenant_id}", tag = "quotas",
    operation_id = "reset_quota", security(("bearer" = [])),
    params(("tenant_id" = String, Path, min_length = 1, max_length = 255,
        pattern = "@tenant_id")),
    responses((status = 200, body = QuotaView), (status = 403, body = snapgate_core::ErrorBody)))]
pub async fn delete(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(tenant): PathParams<String>,
) -> Result<Json<QuotaView>, ApiError> {
    Ok(Json(app.service.set_quota(&caller, &tenant, None).await?))
}
