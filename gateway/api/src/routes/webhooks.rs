//! `/v1/webhooks`: a tenant's event receivers (issue 12, point 5). The service authorizes;
//! nothing here checks a role.

use axum::extract::State as AppStateExt;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use snapgate_core::events::EventKind;
use snapgate_core::service::{CreatedWebhook, WebhookDetail, WebhookInput};
use snapgate_core::webhook::Webhook;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::{Body, PathParams, QueryParams};
use crate::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// `http` or `https`, no credentials; its host must resolve to addresses the operator
    /// allows (by default public ones only).
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    /// The kinds to deliver; absent or empty: every kind.
    pub events: Option<Vec<EventKind>>,
    #[schema(max_length = 1024, pattern = "@description")]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TenantQuery {
    /// The operator's: the tenant the call acts in (a tenant's own caller may name only its
    /// own; another is 404).
    #[param(min_length = 1, max_length = 255, pattern = "@tenant_id")]
    pub tenant: Option<String>,
}

/// Decoded by the CLI too.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    /// Oldest first.
    pub values: Vec<Webhook>,
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", operation_id = "create_webhook",
    security(("bearer" = [])), params(TenantQuery), request_body = WebhookBody,
    responses((status = 201, description = "created; `secret` is shown this once", body = CreatedWebhook, headers(("Location" = String))),
        (status = 403, body = snapgate_core::ErrorBody),
        (status = 404, description = "`tenant_not_found`: another tenant named", body = snapgate_core::ErrorBody),
        (status = 409, description = "`webhook_limit_exceeded` (`limit`)", body = snapgate_core::ErrorBody),
        (status = 422, description = "`webhook_target_refused`, `webhook_target_unresolvable`", body = snapgate_core::ErrorBody)))]
pub async fn create(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    QueryParams(q): QueryParams<TenantQuery>,
    Body(body): Body<WebhookBody>,
) -> Result<Response, ApiError> {
    let input = WebhookInput {
        url: body.url,
        events: body.events,
        description: body.description,
    };
    let created = app.service.create_webhook(&caller, q.tenant, input).await?;
    let location = format!("/v1/webhooks/{}", created.webhook.uuid);
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", operation_id = "list_webhooks",
    security(("bearer" = [])), params(TenantQuery),
    responses((status = 200, body = WebhookList),
        (status = 404, description = "`tenant_not_found`: another tenant named", body = snapgate_core::ErrorBody)))]
pub async fn list(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    QueryParams(q): QueryParams<TenantQuery>,
) -> Result<Json<WebhookList>, ApiError> {
    let values = app.service.list_webhooks(&caller, q.tenant).await?;
    Ok(Json(WebhookList { values }))
}

#[utoipa::path(get, path = "/v1/webhooks/{webhook_uuid}", tag = "webhooks",
    operation_id = "get_webhook", security(("bearer" = [])),
    params(("webhook_uuid" = Uuid, Path)),
    responses((status = 200, body = WebhookDetail), (status = 404, body = snapgate_core::ErrorBody)))]
pub async fn get(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(id): PathParams<Uuid>,
) -> Result<Json<WebhookDetail>, ApiError> {
    Ok(Json(app.service.get_webhook(&caller, id).await?))
}

#[utoipa::path(delete, path = "/v1/webhooks/{webhook_uuid}", tag = "webhooks",
    operation_id = "delete_webhook", security(("bearer" = [])),
    params(("webhook_uuid" = Uuid, Path)),
    responses((status = 204, description = "deleted with its deliveries"),
        (status = 403, body = snapgate_core::ErrorBody),
        (status = 404, body = snapgate_core::ErrorBody)))]
pub async fn delete(
    AppStateExt(app): AppStateExt<AppState>,
    Authenticated(caller): Authenticated,
    PathParams(id): PathParams<Uuid>,
) -> Result<StatusCode, ApiError> {
    app.service.delete_webhook(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
