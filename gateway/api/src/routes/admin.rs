//! Admin calls: instance ownership, policy decisions, the plugin chain and its reload. The
//! service authorizes each of them; nothing here checks a role.

use axum::extract::State as AppStateExt;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use snapgate_core::ports::repository::{DecisionFilter, DecisionRecord};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::{Body, PathParams, QueryParams};
use crate::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerBody {
    /// The tenant that owns the instance; `null` returns to the domain's metadata.
    #[schema(min_length = 1, max_length = 255, pattern = "@tenant_id")]
    pub tenant_id: Option<String>,
}

#[utoipa::path(put, path = "/v1/instances/{instance_uuid}/owner", tag = "admin",
    operation_id = "set_instance_owner", security(("bearer" = [])),
    params(("instance_uuid" = Uuid, Path)), request_body = OwnerBody,
    responses((status = 204), (status = 403, body = snapgate_core::ErrorBody), (status = 404, body = snapgate_core::ErrorBody),
        (status = 409, description = "`instance_busy`: an operation runs on the instance (`operation`); try again once it has ended", body = snapgate_core::ErrorBody)))]
pub async fn set_owner(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(instance): PathParams<Uuid>,
    Body(body): Body<OwnerBody>,
) -> Result<StatusCode, ApiError> {
    app.service
        .set_instance_owner(&caller, instance, body.tenant_id.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DecisionQuery {
    /// A tenant id (the tenant-id rule); the other filters are text without control
    /// characters (PostgreSQL refuses a NUL in text).
    #[param(min_length = 1, max_length = 255, pattern = "@tenant_id")]
    pub tenant: Option<String>,
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub plugin: Option<String>,
    /// `allow`, `deny` or `error`.
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub outcome: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Default 100; 0 counts as 1 and anything above 1000 as 1000.
    #[param(minimum = 0)]
    pub limit: Option<i64>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct DecisionList {
    pub values: Vec<DecisionRecord>,
}

#[utoipa::path(get, path = "/v1/policy/decisions", tag = "admin", params(DecisionQuery),
    operation_id = "list_policy_decisions", security(("bearer" = [])),
    responses((status = 200, body = DecisionList), (status = 403, body = snapgate_core::ErrorBody),
        // A tenant's admin asking for another tenant: the tenant wall's 404, `tenant_not_found`.
        (status = 404, body = snapgate_core::ErrorBody)))]
pub async fn decisions(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    QueryParams(q): QueryParams<DecisionQuery>,
) -> Result<Json<DecisionList>, ApiError> {
    for (name, value) in [
        ("tenant", &q.tenant),
        ("plugin", &q.plugin),
        ("outcome", &q.outcome),
    ] {
        if value
            .as_deref()
            .is_some_and(|v| v.chars().any(char::is_control))
        {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("{name} must not contain control characters"),
            ));
        }
    }
    let limit = match q.limit {
        None => 100,
        Some(n) if n >= 0 => n.clamp(1, 1000) as u64,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "limit must be at least 0",
            ))
        }
    };
    let filter = DecisionFilter {
        tenant: q.tenant,
        plugin: q.plugin,
        outcome: q.outcome,
        since: q.since,
        until: q.until,
        limit,
    };
    let values = app.service.list_decisions(&caller, filter).await?;
    Ok(Json(DecisionList { values }))
}

#[utoipa::path(get, path = "/v1/policy/plugins", tag = "admin",
    operation_id = "list_policy_plugins", security(("bearer" = [])),
    responses((status = 200, description = "the loaded chain, in order"), (status = 403, body = snapgate_core::ErrorBody)))]
pub async fn plugins(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(app.service.policy_chain(&caller)?))
}

/// Rebuilds the plugin chain from the configuration, off the request path, and swaps it in.
/// A plugin that fails to load is refused and the old chain keeps serving.
#[utoipa::path(post, path = "/v1/policy/reload", tag = "admin",
    operation_id = "reload_policy", security(("bearer" = [])),
    responses((status = 200, description = "the new chain"), (status = 403, body = snapgate_core::ErrorBody),
        (status = 422, body = snapgate_core::ErrorBody)))]
pub async fn reload(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(app.service.reload_policy(&caller).await?))
}
